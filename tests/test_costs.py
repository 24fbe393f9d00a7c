"""Costs per LLM, cost-aware choice rules and the quality-vs-cost frontier,
against hand-computed cases."""

import itertools
import os

import numpy as np
import pytest

from irt_jax import numerics
from irt_jax.routing import costs
from irt_jax.routing import rules
from irt_jax.data.io import DataError
from irt_jax.evaluation import cost_frontier as cf
from tests.conftest import MINILM_DIR

MINILM = MINILM_DIR


def _logit(p):
  p = np.asarray(p, np.float64)
  return np.log(p) - np.log1p(-p)


def _write(path, text):
  path.write_text(text)
  return str(path)


# --- loading costs ----------------------------------------------------------

def test_prices_in_run_order_and_token_costs(tmp_path):
  path = _write(tmp_path / "model_prices.csv",
                "model_name,input_price_per_mtok,output_price_per_mtok,size\n"
                "b,2,4,70B\na,1,3,7b\nc,9,9,\n")
  prices = costs.read_prices(path, ["a", "b"])
  np.testing.assert_array_equal(prices.input_per_mtok, [1, 2])
  np.testing.assert_array_equal(prices.output_per_mtok, [3, 4])
  np.testing.assert_array_equal(prices.size_b, [7, 70])
  table = costs.token_costs(prices, np.array([100, 200]), output_tokens=10)
  # (100 * 1 + 10 * 3) / 1e6, (100 * 2 + 10 * 4) / 1e6; second query 200 input tokens.
  np.testing.assert_allclose(table, [[130e-6, 240e-6], [230e-6, 440e-6]])


def test_prices_bad_input(tmp_path):
  good = "model_name,input_price_per_mtok,output_price_per_mtok\na,1,1\n"
  with pytest.raises(DataError, match=r"no price for model\(s\) \['zz'\]"):
    costs.read_prices(_write(tmp_path / "p1.csv", good), ["a", "zz"])
  with pytest.raises(DataError, match=r"p2.csv: row 3: output_price_per_mtok .* '-1'"):
    costs.read_prices(_write(tmp_path / "p2.csv", good + "b,1,-1\n"), ["a", "b"])
  with pytest.raises(DataError, match=r"row 2: input_price_per_mtok .* 'nan'"):
    costs.read_prices(_write(tmp_path / "p3.csv",
                             "model_name,input_price_per_mtok,output_price_per_mtok\n"
                             "a,nan,1\n"), ["a"])


def test_token_counts_fallback_and_tokenizer():
  np.testing.assert_array_equal(costs.token_counts(["", "abcd", "abcde"]), [0, 1, 2])
  if not os.path.isfile(os.path.join(MINILM, "tokenizer.json")):
    pytest.skip(f"needs a MiniLM tokenizer: {MINILM}/tokenizer.json is missing "
                "(python -m irt_jax fetch-encoder --out=.models)")
  # WordPiece: 'hello', 'world', '!' (no [CLS]/[SEP]).
  np.testing.assert_array_equal(costs.token_counts(["hello world!"], MINILM), [3])


def test_read_costs_by_id_or_name_and_bad_rows(tmp_path):
  head = "prompt_id,model_id,cost\n"
  path = _write(tmp_path / "costs.csv", head + "q1,0,0.5\nq0,beta,2\n")
  table = costs.read_costs(path, ["q0", "q1"], ["0", "1"], ["alpha", "beta"])
  np.testing.assert_array_equal(np.isnan(table), [[True, False], [False, True]])
  assert table[1, 0] == 0.5 and table[0, 1] == 2
  with pytest.raises(DataError, match=r"row 2 names model 'gamma'"):
    costs.read_costs(_write(tmp_path / "c2.csv", head + "q0,gamma,1\n"), ["q0"], ["0"],
                     ["alpha"])
  with pytest.raises(DataError, match=r"row 3: cost must be .* 'nan'"):
    costs.read_costs(_write(tmp_path / "c3.csv", head + "q0,0,1\nq0,0,nan\n"), ["q0"],
                     ["0"], ["alpha"])
  with pytest.raises(DataError, match=r"prompt_id 'qq'"):
    costs.read_costs(_write(tmp_path / "c4.csv", head + "qq,0,1\n"), ["q0"], ["0"], ["alpha"])


@pytest.mark.parametrize("name,size", [
    ("7B", 7), ("Mixtral-8x7B-Instruct-v0.1", 56), ("Llama-3.1-405B-Inst-fp8", 405),
    ("Meta-Llama-3-8B-Instruct", 8), ("gemma-2-2b-it", 2), ("Yi-1.5-34B-Chat", 34),
    ("Qwen2.5-7B-Instruct", 7), ("tiny-350m", 0.35)])
def test_parse_size(name, size):
  assert costs.parse_size(name) == pytest.approx(size)


@pytest.mark.parametrize("name", ["gpt-4o-2024-05-13", "Phi-3-mini-4k-instruct", "o1-mini"])
def test_parse_size_none(name):
  assert np.isnan(costs.parse_size(name))


def test_parameter_costs_refuses_unknown_size():
  np.testing.assert_array_equal(costs.parameter_costs(["a-7b", "b-70B"]), [7, 70])
  with pytest.raises(DataError, match=r"gpt-4o"):
    costs.parameter_costs(["a-7b", "gpt-4o"])


def test_for_data_dir_prefers_costs_then_prices(tmp_path):
  (tmp_path / "model_order.csv").write_text("model_id,model_name\n0,a\n1,b\n")
  (tmp_path / "model_prices.csv").write_text(
      "model_name,input_price_per_mtok,output_price_per_mtok\na,1,0\nb,2,0\n")
  out = costs.for_data_dir(str(tmp_path), ["a", "b"], ["q0"], ["abcdefgh"], output_tokens=0)
  assert out.source == "model_prices.csv"
  np.testing.assert_allclose(out.values, [[2e-6, 4e-6]])  # 8 chars = 2 tokens
  (tmp_path / "costs.csv").write_text("prompt_id,model_id,cost\nq0,0,3\nq0,1,5\n")
  out = costs.for_data_dir(str(tmp_path), ["a", "b"], ["q0"], None)
  assert out.source == "costs.csv"
  np.testing.assert_array_equal(out.values, [[3, 5]])
  np.testing.assert_array_equal(out.per_model(), [3, 5])
  assert costs.for_data_dir(str(tmp_path / "nowhere"), ["a"], ["q0"], None) is None


# --- choice rules -------------------------------------------------------------

def test_choose_with_cost_hand_case():
  proba = np.array([[0.9, 0.6, 0.5], [0.9, 0.6, 0.5]])
  cost = np.array([10.0, 1.0, 0.0])
  known = np.array([[True, True, True], [True, True, False]])
  np.testing.assert_array_equal(rules.choose_with_cost(_logit(proba), cost, 0.0, known), [0, 0])
  # w = 0.05: 0.9 - 0.5 = 0.4, 0.6 - 0.05 = 0.55, 0.5 -> model 1 (both rows).
  np.testing.assert_array_equal(rules.choose_with_cost(_logit(proba), cost, 0.05, known), [1, 1])
  # w = 1: model 2 where known; row 1 lacks it -> model 1.
  np.testing.assert_array_equal(rules.choose_with_cost(_logit(proba), cost, 1.0, known), [2, 1])
  np.testing.assert_array_equal(rules.choose_with_cost(_logit(proba), cost, np.inf, known), [2, 1])
  # Per-query costs [n, M].
  per_query = np.array([[0.0, 5.0, 5.0], [5.0, 0.0, 5.0]])
  np.testing.assert_array_equal(
      rules.choose_with_cost(_logit(proba), per_query, np.inf, known), [0, 1])
  with pytest.raises(ValueError, match="cost of shape"):
    rules.choose_with_cost(_logit(proba), np.ones(2), 1.0, known)


def test_choices_break_probability_ties_by_logit():
  # Logits 40 and 45 both round to P = 1.0 in float64: P - w * cost ties, and an
  # index tie-break would pick model 0; the logit says model 1.
  logits = np.array([[40.0, 45.0, -1.0]])
  known = np.ones((1, 3), bool)
  assert numerics.sigmoid(logits)[0, 0] == numerics.sigmoid(logits)[0, 1] == 1.0
  cost = np.array([1.0, 1.0, 5.0])
  assert rules.choose_with_cost(logits, cost, 0.1, known).tolist() == [1]
  assert rules.choose_with_cost(logits, cost, np.inf, known).tolist() == [1]
  first, second = rules.choose_with_cost(logits, cost, 0.1, known, runner_up=True)
  assert (first.tolist(), second.tolist()) == ([1], [0])
  # A query with no known model gets -1 from every rule.
  none = np.zeros((1, 3), bool)
  assert rules.choose_with_cost(logits, cost, 0.1, none).tolist() == [-1]
  assert rules.choose_under_budget(logits, cost, 1.0, none).tolist() == [-1]
  both = np.vstack([known, none])
  np.testing.assert_array_equal(
      rules.choose_under_budget(np.vstack([logits, logits]), cost, 1.0, both), [1, -1])


def test_costs_for_routing_from_json_and_prices(tmp_path):
  path = _write(tmp_path / "c.json", '{"b": 2, "a": 0.5}')
  np.testing.assert_array_equal(costs.for_routing(path, ["a", "b"]), [0.5, 2.0])
  with pytest.raises(DataError, match=r"c.json: unknown model\(s\) \['zz'\]"):
    costs.for_routing(_write(tmp_path / "c.json", '{"a": 1, "b": 1, "zz": 1}'), ["a", "b"])
  with pytest.raises(DataError, match=r"c.json: no cost for model\(s\) \['b'\]"):
    costs.for_routing(_write(tmp_path / "c.json", '{"a": 1}'), ["a", "b"])
  with pytest.raises(DataError, match="cost of 'a' must be a finite number >= 0"):
    costs.for_routing(_write(tmp_path / "c.json", '{"a": -1, "b": 1}'), ["a", "b"])
  with pytest.raises(DataError, match="c.json: cannot read costs"):
    costs.for_routing(_write(tmp_path / "c.json", '{"a": '), ["a", "b"])
  # Prices: a function of the texts, by chars/4 without a tokenizer.
  prices = _write(tmp_path / "model_prices.csv",
                  "model_name,input_price_per_mtok,output_price_per_mtok\na,1,2\nb,10,20\n")
  price = costs.for_routing(prices, ["b", "a"], output_tokens=100)
  got = price(["abcdefgh", "abc"])                  # 2 and 1 tokens
  np.testing.assert_allclose(got, [[(2 * 10 + 100 * 20) / 1e6, (2 + 200) / 1e6],
                                   [(10 + 2000) / 1e6, (1 + 200) / 1e6]])


def _brute_force(proba, cost, budget, known):
  n, m = proba.shape
  best, best_value = None, -np.inf
  for combo in itertools.product(range(m), repeat=n):
    combo = np.array(combo)
    if not known[np.arange(n), combo].all():
      continue
    if cost[np.arange(n), combo].mean() <= budget + 1e-12:
      value = proba[np.arange(n), combo].sum()
      if value > best_value:
        best, best_value = combo, value
  return best, best_value


def test_budget_exact_on_hand_case():
  # Two queries, three models priced 0 / 1 / 3. Budget 1 (mean): best is to send
  # query 0 (which gains 0.5 on model 1) to model 1 and query 1 to model 1: cost 1.
  proba = np.array([[0.2, 0.7, 0.8], [0.3, 0.6, 0.9]])
  cost = np.array([0.0, 1.0, 3.0])
  known = np.ones_like(proba, bool)
  choice = rules.choose_under_budget(_logit(proba), cost, 1.0, known)
  np.testing.assert_array_equal(choice, [1, 1])
  # Budget 2: model 2 for query 1 (0.9, cost 3) and model 1 for query 0 (cost 1).
  np.testing.assert_array_equal(rules.choose_under_budget(_logit(proba), cost, 2.0, known), [1, 2])
  with pytest.raises(ValueError, match="below the mean cost"):
    rules.choose_under_budget(_logit(proba), cost + 1, 0.5, known)


def test_budget_against_brute_force():
  rng = np.random.default_rng(0)
  exact = 0
  for trial in range(40):
    n, m = 4, 3
    proba = rng.uniform(size=(n, m))
    cost = rng.uniform(size=(n, m)) * rng.integers(1, 4, size=m)
    known = rng.uniform(size=(n, m)) < 0.85
    known[:, 0] = True
    floor = cost[np.arange(n), rules.choose_with_cost(_logit(proba), cost, np.inf, known)].mean()
    budget = floor + rng.uniform() * (cost.max() - floor)
    choice = rules.choose_under_budget(_logit(proba), cost, budget, known)
    assert known[np.arange(n), choice].all()
    assert cost[np.arange(n), choice].mean() <= budget + 1e-9
    _, best = _brute_force(proba, cost, budget, known)
    got = proba[np.arange(n), choice].sum()
    # Lagrangian + greedy fill: at most one query's gain short of the optimum.
    assert got >= best - np.ptp(proba, axis=1).max() - 1e-9
    exact += np.isclose(got, best)
  assert exact >= 30  # and optimal in most cases


# --- frontier metrics -----------------------------------------------------------

def test_hull_and_aiq_hand_cases():
  # (1, 0.4) lies under the chord from (0, 0) to (2, 1): the hull is that chord,
  # whose mean over [0, 2] is 0.5 (a plain curve through the points gives 0.45).
  assert cf.aiq([0, 1, 2], [0, 0.4, 1.0]) == pytest.approx(0.5)
  # A dominated point (dearer, worse) is ignored and the hull stays flat after the
  # peak: (0,.5)-(.5,.7) then .7 to cost 2: (0.5 * 0.6 + 1.5 * 0.7) / 2.
  c, q = [0, 1, 0.5, 2], [0.5, 0.6, 0.7, 0.65]
  hc, hq = cf.convex_hull(c, q)
  np.testing.assert_array_equal(hc, [0, 0.5])
  assert cf.aiq(c, q) == pytest.approx(0.675)
  assert cf.aiq(c, q, c_max=4) == pytest.approx((0.3 + 3.5 * 0.7) / 4)
  assert cf.cost_to_reach([0, 2], [0.5, 1.0], 0.75) == pytest.approx(1.0)
  assert cf.cost_to_reach(c, q, 0.6) == pytest.approx(0.25)
  assert cf.cost_to_reach(c, q, 0.8) is None


def test_apgr_and_cpt_hand_case():
  strong = np.array([1, 1, 1, 0])
  weak = np.array([0, 1, 0, 0])
  score = np.array([0.9, 0.1, 0.5, 0.3])
  # Sent to strong in order q0, q2, q3, q1: PGR 0, .5, 1, 1, 1 at shares 0..1.
  share, pgr = cf.pgr_curve(score, strong, weak)
  np.testing.assert_allclose(pgr, [0, 0.5, 1, 1, 1])
  assert cf.apgr(score, strong, weak) == pytest.approx(0.75)
  assert cf.cpt(score, strong, weak, 0.5) == pytest.approx(0.25)
  assert cf.cpt(score, strong, weak, 1.0) == pytest.approx(0.5)
  # A router that cannot tell queries apart: all-or-nothing, APGR 0.5.
  assert cf.apgr(np.zeros(4), strong, weak) == pytest.approx(0.5)
  with pytest.raises(ValueError, match="more accurate"):
    cf.apgr(score, weak, strong)


def test_frontier_baselines_and_summary():
  # Three queries, models: 0 strong and dear (cost 10), 1 cheap (cost 1).
  labels = np.array([[1, 0], [1, 1], [0, 1]], np.int8)
  proba = np.array([[0.9, 0.2], [0.8, 0.7], [0.4, 0.6]])
  cost = np.array([10.0, 1.0])
  out = cf.frontier(_logit(proba), labels, cost, train_order=np.array([0, 1]),
                    weights=[0.0, 0.02, np.inf])
  # w=0: [0, 0, 1] -> all correct at (10+10+1)/3; w=.02: 0.9-.2 > .2-.02; .8-.2 < .7-.02
  # -> [0, 1, 1], all correct at 4; inf: all model 1, acc 2/3 at 1.
  pts = [(p["cost"], p["accuracy"]) for p in out["points"]]
  np.testing.assert_allclose(pts, [(7, 1), (4, 1), (1, 2 / 3)])
  assert out["baselines"]["oracle"] == {"cost": pytest.approx(4.0), "accuracy": 1.0}
  assert out["baselines"]["best_single"]["cost"] == pytest.approx(10.0)
  assert out["baselines"]["best_single"]["accuracy"] == pytest.approx(2 / 3)
  assert out["baselines"]["random"]["cost"] == pytest.approx(5.5)
  assert out["baselines"]["random"]["accuracy"] == pytest.approx(2 / 3)
  assert out["peak_accuracy"] == 1.0
  assert out["cost_to_match_best_single"] == pytest.approx(1.0)
  # Hull (1, 2/3) -> (4, 1), flat to 10: (3 * (2/3 + 1) / 2 + 6) / 9.
  assert out["aiq"] == pytest.approx((2.5 + 6) / 9)
  # Zero router: hull of the single models (1, 2/3) and (10, 2/3): flat at 2/3.
  assert out["aiq_zero_router"] == pytest.approx(2 / 3)
  assert out["pair"]["strong"] == 0 and out["pair"]["weak"] == 1
  assert out["apgr"] is None  # both are 2/3 accurate: no gap to recover


def test_evaluator_on_a_folder_with_prices(synthetic_dir, tmp_path):
  """The evaluator prices a data folder by tokens, reports every summary key and
  draws the plot; default_evaluators picks it up only when prices exist."""
  import shutil
  import types

  from irt_jax.data import io as data_lib
  from irt_jax.evaluation import evaluators

  folder = str(tmp_path / "data")
  shutil.copytree(synthetic_dir, folder)
  data = data_lib.load_dataset(folder, require=())
  rows = ["model_name,input_price_per_mtok,output_price_per_mtok"] + [
      f"{m},{1 + i},{2 * (1 + i)}" for i, m in enumerate(data.model_names)]
  (tmp_path / "data" / "model_prices.csv").write_text("\n".join(rows) + "\n")
  from configs import test as test_config
  config = test_config.get_config()  # the data and encoder fields the data spec reads
  config.data.dir = folder
  run = types.SimpleNamespace(config=config, workdir=str(tmp_path))
  test = data.split("test")
  rng = np.random.default_rng(0)
  logits = np.where(test.labels == 1, 1.0, -1.0) + rng.normal(size=test.labels.shape)
  pred = evaluators.Predictions(logits=logits.astype(np.float32), labels=test.labels,
                                benchmark=data.benchmark[test.queries],
                                benchmark_names=data.benchmark_names)
  ctx = evaluators.Context(run=run, data=data, split="test", predictions=pred,
                           options={"plot_dir": str(tmp_path / "eval"), "tokenizer_dir": None,
                                    "output_tokens": 0})
  out = evaluators.get(["cost_frontier"])[0].run(ctx)
  assert {"points", "aiq", "cost_to_match_best_single", "peak_accuracy", "apgr",
          "cpt50"} <= set(out)
  assert out["cost_source"] == "model_prices.csv" and os.path.exists(out["plot"])
  # w = 0 routes like the plain router; inf always picks model 0 (the cheapest).
  known = test.labels >= 0
  rows_known = known.any(1)
  plain = rules.choose_by_score(logits, known)[rows_known]
  acc0 = (test.labels[rows_known][np.arange(rows_known.sum()), plain] == 1).mean()
  assert out["points"][0]["accuracy"] == pytest.approx(acc0)
  assert out["points"][-1]["cost_weight"] is None
  assert 0 <= out["aiq"] <= out["peak_accuracy"] <= out["baselines"]["oracle"]["accuracy"]
  strong = out["pair"]["strong"]
  assert strong == data.model_names[rules.best_single_order(data.split("train"))[0]]
  assert out["pair"]["weak"] == data.model_names[1 if strong == data.model_names[0] else 0]
