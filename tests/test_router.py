"""The Router: text -> encoder -> predictor -> a model, in Python and on the command line."""

import importlib.util
import itertools
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from configs import test as test_config
from irt_jax.routing import costs
from irt_jax.routing import rules
from irt_jax import training
from irt_jax.routing.router import Router, RouterError
from tests.conftest import MINILM_DIR, REPO, needs_encoder
from tests.fake_encoder import HashEncoder
from tests.test_encoder import make_tiny_model

pytest_plugins = ["tests.router_fixtures"]   # run, text_run, text_router: shared with test_serve

MINILM = MINILM_DIR
TEXTS = ["What is 17 * 23?", "Name the capital of Australia.", "Write a haiku about rain.",
         "Prove that sqrt(2) is irrational.", "Translate 'good morning' into French."]


class FixedPredictor:
  """Logits given by hand per text (through a HashEncoder-free lookup)."""

  def __init__(self, model_names, table):
    self.model_names = tuple(model_names)
    self.input_dim = 1
    self.table = np.asarray(table, np.float64)

  def logits(self, emb):
    return self.table[np.asarray(emb[:, 0], np.int64)]


class IndexEncoder:
  """Text 'q<i>' -> [i]: selects row i of a FixedPredictor's table."""
  dim = 1

  def encode(self, texts, batch_size=64, progress=False):
    return np.asarray([[float(t[1:])] for t in texts], np.float32)


def fixed_router(table, costs=None, names=None):
  names = names or [f"m{j}" for j in range(len(table[0]))]
  return Router.from_predictor(FixedPredictor(names, table), IndexEncoder(), costs=costs)


# ------------------------------------------------------------------ choices on logits

def test_route_is_argmax_of_logits_with_runner_up(run):
  from irt_jax import predictors
  predictor = predictors.load(run).predictor
  encoder = HashEncoder(predictor.input_dim)
  router = Router.from_predictor(predictor, encoder)
  logits = predictor.logits(encoder.encode(TEXTS))
  np.testing.assert_array_equal(router.logits(TEXTS), logits)
  np.testing.assert_allclose(router.predict(TEXTS), 1 / (1 + np.exp(-logits.astype(np.float64))))
  routes = router.route(TEXTS)
  order = np.argsort(-logits, axis=1, kind="stable")
  names = predictor.model_names
  assert [r.model for r in routes] == [names[i] for i in order[:, 0]]
  assert [r.runner_up for r in routes] == [names[i] for i in order[:, 1]]
  for q, r in enumerate(routes):
    assert r.logit == pytest.approx(float(logits[q, order[q, 0]]))
    assert r.p_correct == pytest.approx(1 / (1 + np.exp(-r.logit)))
    assert r.expected_cost is None
  # Candidates: the best among them, never one outside.
  allowed = [names[2], names[5], names[7]]
  cols = [2, 5, 7]
  sub = router.route(TEXTS, candidates=allowed)
  assert [r.model for r in sub] == [names[cols[i]] for i in logits[:, cols].argmax(1)]
  assert {r.runner_up for r in sub} <= set(allowed)


def test_saturated_probabilities_do_not_tie():
  # P rounds to 1.0 for all three in float64; the logits still differ.
  router = fixed_router([[40.0, 50.0, 45.0]])
  (r,) = router.route(["q0"])
  assert (r.model, r.runner_up) == ("m1", "m2")
  assert r.p_correct == 1.0 and r.logit == 50.0


def test_unknown_or_empty_candidates_are_clear_errors():
  router = fixed_router([[0.0, 1.0]])
  with pytest.raises(RouterError, match=r"unknown candidate model\(s\) \['gpt-9'\].*m0, m1"):
    router.route(["q0"], candidates=["m0", "gpt-9"])
  with pytest.raises(RouterError, match="candidates is empty"):
    router.route(["q0"], candidates=[])
  (r,) = router.route(["q0"], candidates=["m0"])
  assert (r.model, r.runner_up, r.runner_up_p) == ("m0", None, None)


def test_cost_weight_trades_probability_for_cost():
  # P = 0.881 (m0, costs 1.0) vs 0.5 (m1, free): m0 wins until cost_weight > 0.3808.
  router = fixed_router([[2.0, 0.0]], costs=[1.0, 0.0])
  p0 = 1 / (1 + np.exp(-2.0))
  assert router.route(["q0"])[0].model == "m0"
  r = router.route(["q0"], cost_weight=0.3)[0]
  assert (r.model, r.expected_cost, r.runner_up) == ("m0", 1.0, "m1")
  r = router.route(["q0"], cost_weight=0.4)[0]
  assert (r.model, r.expected_cost, r.runner_up) == ("m1", 0.0, "m0")
  # The switch point, by hand: 0.8808 - w = 0.5 at w = 0.3808.
  assert p0 - 0.3808 == pytest.approx(0.5, abs=1e-4)
  assert router.route(["q0"], cost_weight=0.380)[0].model == "m0"
  assert router.route(["q0"], cost_weight=0.381)[0].model == "m1"
  # A name -> cost mapping and per-(query, model) costs work the same.
  named = fixed_router([[2.0, 0.0]], costs={"m1": 0.0, "m0": 1.0})
  assert named.route(["q0"], cost_weight=0.4)[0].model == "m1"
  per_query = fixed_router([[2.0, 0.0], [2.0, 0.0]], costs=[[1.0, 0.0], [0.1, 0.0]])
  assert [r.model for r in per_query.route(["q0", "q1"], cost_weight=0.4)] == ["m1", "m0"]


def test_rank_is_the_fallback_order():
  # Logits: m2 > m0 > m3 > m1 on q0; costs make m3 (free) win q0 at a high cost weight.
  table = [[1.0, -2.0, 3.0, 0.5], [0.0, 2.0, -1.0, 1.0]]
  router = fixed_router(table, costs=[1.0, 1.0, 2.0, 0.0])
  assert router.rank_logits(np.array(table)) == [["m2", "m0", "m3", "m1"], ["m1", "m3", "m0", "m2"]]
  assert router.rank_logits(np.array(table), k=2, candidates=["m0", "m1", "m3"]) == [
      ["m0", "m3"], ["m1", "m3"]]
  # P - 0.5 * cost on q0: m0 0.231, m1 -0.381, m2 -0.047, m3 0.622.
  assert router.rank_logits(np.array(table), cost_weight=0.5, texts=["q0", "q1"])[0] == [
      "m3", "m0", "m2", "m1"]
  # The head of the ranking is the Router's choice and the next its runner-up.
  for w in (0.0, 0.2, 0.5, 3.0):
    routes = router.route_logits(np.array(table), w, texts=["q0", "q1"])
    ranks = router.rank_logits(np.array(table), w, texts=["q0", "q1"])
    assert [r[:2] for r in ranks] == [[x.model, x.runner_up] for x in routes]
  with pytest.raises(RouterError, match="needs costs"):
    fixed_router(table).rank_logits(np.array(table), cost_weight=0.1)


def test_one_sort_ranks_as_picking_the_best_left_one_at_a_time():
  # rules.ranked against its definition: repeated rules.choose_with_cost among the models
  # not yet placed. Scores drawn from 3 values (and logits from 2) so most rows hold ties
  # that only the logit, then the index, break; every mask, cost weight and k.
  rng = np.random.default_rng(0)
  for trial in range(200):
    n, m = int(rng.integers(1, 4)), int(rng.integers(1, 7))
    logits = rng.choice([-1.0, 0.5], size=(n, m))
    cost = rng.choice([0.0, 1.0, 2.0], size=m)
    w = [0.0, 0.3, np.inf][trial % 3]
    allowed = rng.random((n, m)) < 0.7
    k = int(rng.integers(0, m + 1))
    left, want = allowed.copy(), [[] for _ in range(n)]
    for _ in range(k):
      pick = rules.choose_with_cost(logits, cost, w, left)
      for q in np.flatnonzero(pick >= 0):
        want[q].append(int(pick[q]))
        left[q, pick[q]] = False
    assert rules.ranked(rules.rule_score(logits, cost, w), logits, allowed, k) == want


def test_load_parses_steps_and_refuses_bad_ones(run):
  from irt_jax.routing import router as router_lib
  assert router_lib.parse_step("best") == "best" and router_lib.parse_step("12") == 12
  with pytest.raises(RouterError, match="step must be 'best', 'latest' or a step number"):
    router_lib.load(run, step="newest")


def test_costs_are_required_and_checked():
  router = fixed_router([[2.0, 0.0]])
  with pytest.raises(RouterError, match="need costs"):
    router.route(["q0"], cost_weight=0.1)
  with pytest.raises(RouterError, match="need costs"):
    router.route(["q0"], budget=1.0)
  with pytest.raises(RouterError, match=r"does not fit 2 models"):
    fixed_router([[2.0, 0.0]], costs=[1.0, 2.0, 3.0])
  with pytest.raises(RouterError, match=r"no cost for model\(s\) \['m1'\]"):
    fixed_router([[2.0, 0.0]], costs={"m0": 1.0})
  with pytest.raises(RouterError, match="cost_weight must be a finite number >= 0, got -1"):
    fixed_router([[2.0, 0.0]], costs=[1.0, 0.0]).route(["q0"], cost_weight=-1)
  with pytest.raises(RouterError, match="budget must be a finite number >= 0, got nan"):
    fixed_router([[2.0, 0.0]], costs=[1.0, 0.0]).route(["q0"], budget=float("nan"))
  with pytest.raises(RouterError, match="cost of 'm0' must be a finite number >= 0, got True"):
    fixed_router([[2.0, 0.0]], costs={"m0": True, "m1": 0.0})
  with pytest.raises(RouterError, match="costs must be finite numbers >= 0"):
    fixed_router([[2.0, 0.0]], costs=[np.inf, 0.0])
  with pytest.raises(RouterError, match="3 rows for 1 queries"):
    fixed_router([[2.0, 0.0]], costs=np.zeros((3, 2))).route(["q0"])


def test_budget_by_hand():
  # Two queries; models cost 0, 1, 3. Query 0 gains much from m1, query 1 from m2.
  table = [[0.0, 3.0, 3.2], [-2.0, -1.5, 4.0]]
  router = fixed_router(table, costs=[0.0, 1.0, 3.0])
  p = 1 / (1 + np.exp(-np.asarray(table)))
  # Mean budget 0.5 (total 1): only q0 -> m1 fits.
  assert [r.model for r in router.route(["q0", "q1"], budget=0.5)] == ["m1", "m0"]
  # Total 3: q0 -> m1 first (gain per cost 0.45 > 0.29 for q1 -> m2); q1 -> m2 (+3) then
  # no longer fits, but q0's next step, m1 -> m2 (+2), does: leftover budget is used.
  gain_q0, gain_q1 = p[0, 1] - p[0, 0], p[1, 2] - p[1, 0]
  assert gain_q0 / 1 > gain_q1 / 3
  assert [r.model for r in router.route(["q0", "q1"], budget=1.5)] == ["m2", "m0"]
  # Total 4 fits both upgrades.
  routes = router.route(["q0", "q1"], budget=2.0)
  assert [r.model for r in routes] == ["m1", "m2"]
  assert [r.expected_cost for r in routes] == [1.0, 3.0]
  with pytest.raises(RouterError, match="below the mean cost of the cheapest routing"):
    fixed_router(table, costs=[1.0, 2.0, 3.0]).route(["q0", "q1"], budget=0.5)


def test_budget_is_respected_and_beats_every_feasible_cost_weight():
  rng = np.random.default_rng(0)
  for trial in range(15):
    n, m = 5, 4
    logits = rng.normal(scale=2.0, size=(n, m))
    costs = rng.uniform(0, 1, size=m).round(2)
    p = 1 / (1 + np.exp(-logits))
    budget = float(rng.uniform(costs.min(), costs.max()))
    chosen = rules.choose_under_budget(logits, costs, budget, np.ones((n, m), bool))
    assert costs[chosen].mean() <= budget + 1e-12
    value = p[np.arange(n), chosen].sum()
    # At least as good as any cost_weight whose routing fits the budget ...
    for w in np.linspace(0, 5, 101):
      first = rules.choose_with_cost(logits, costs, w, np.ones((n, m), bool))
      if costs[first].mean() <= budget:
        assert value >= p[np.arange(n), first].sum() - 1e-12
    # ... and no better than the best of all m ** n routings that fit.
    best = max(p[np.arange(n), c].sum() for c in itertools.product(range(m), repeat=n)
               if costs[list(c)].mean() <= budget)
    assert value <= best + 1e-12


# ------------------------------------------------------------------ checkpoints and encoders

def test_run_without_an_encoder_folder_names_the_encoder_it_needs(run):
  with pytest.raises(RouterError, match=r"needs its query encoder 'all-mpnet-base-v2'.*encoder_dir"):
    Router.from_checkpoint(run)
  with pytest.raises(RouterError, match=r"/nowhere does not exist.*encoder_dir"):
    Router.from_checkpoint(run, encoder_dir="/nowhere")


def test_text_run_routes_with_its_recorded_encoder_loaded_once(text_run, tmp_path):
  from irt_jax import predictors
  workdir, encoder_dir = text_run
  router = Router.from_checkpoint(workdir)  # its own: the shared one may have loaded already
  assert router._encoder is None  # lazy
  routes = router.route(TEXTS)
  encoder = router.encoder
  assert str(encoder.model_dir) == encoder_dir   # the folder the run recorded
  expected = predictors.load(workdir).predictor.logits(encoder.encode(TEXTS))
  np.testing.assert_allclose(router.logits(TEXTS), expected, atol=1e-6)
  assert [r.model for r in routes] == [router.model_names[i] for i in expected.argmax(1)]
  assert router.encoder is encoder
  # A folder with other weights is refused; a copy of the same one is accepted.
  other = make_tiny_model(tmp_path / "other", "bert", seed=1)
  with pytest.raises(RouterError, match="weights differ from those of the encoder 'tiny-encoder'"):
    Router.from_checkpoint(workdir, encoder_dir=str(other))
  same = tmp_path / "same"
  shutil.copytree(encoder_dir, same)
  Router.from_checkpoint(workdir, encoder_dir=str(same))


@needs_encoder(MINILM)
def test_real_minilm_encoder(tmp_path, text_run):
  from irt_jax import predictors
  config = test_config.get_config()
  config.data.synthetic.update(embed_dim=384, n_queries=200)
  config.encoder.name = "all-MiniLM-L6-v2"
  config.train.num_epochs = 1
  workdir = str(tmp_path / "minilm_run")
  training.train_and_evaluate(config, workdir)
  router = Router.from_checkpoint(workdir, encoder_dir=MINILM)
  routes = router.route(TEXTS)
  assert router.encoder.name == "all-MiniLM-L6-v2" and router.encoder.dim == 384
  expected = predictors.load(workdir).predictor.logits(router.encoder.encode(TEXTS))
  np.testing.assert_allclose(router.logits(TEXTS), expected, atol=1e-5)
  assert [r.model for r in routes] == [router.model_names[i] for i in expected.argmax(1)]
  # A 32-d encoder for a run that reads 384-d embeddings: refused when first used.
  wrong = Router.from_checkpoint(workdir, encoder_dir=text_run[1])
  with pytest.raises(RouterError, match="makes 32-d embeddings but this run reads 384-d"):
    wrong.route(TEXTS)


# ------------------------------------------------------------------ command line

def _cli(*args):
  return subprocess.run([sys.executable, "-m", "irt_jax", "route", *args], cwd=REPO,
                        capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_cli_routes_jsonl(text_run, text_router, tmp_path):
  workdir, _ = text_run
  router = text_router
  pick = [router.model_names[0], router.model_names[3], router.model_names[4]]
  expected = router.route(TEXTS, candidates=pick)
  jsonl = tmp_path / "q.jsonl"
  jsonl.write_text("\n".join(json.dumps({"query" if i % 2 else "prompt": t})
                             for i, t in enumerate(TEXTS)) + "\n\n")
  out = _cli(f"--workdir={workdir}", f"--input={jsonl}", "--json",
             f"--candidates={','.join(pick)}")
  assert out.returncode == 0, out.stderr
  records = [json.loads(line) for line in out.stdout.splitlines()]
  assert [r["model"] for r in records] == [r.model for r in expected]
  assert [r["query"] for r in records] == TEXTS
  assert records[0]["runner_up"] == expected[0].runner_up
  assert records[0]["p_correct"] == pytest.approx(expected[0].p_correct)
  # Queries as arguments, priced by tokens from a model_prices.csv: the CLI routes
  # as the Python Router does with `costs.for_routing`, and reports each cost.
  names = router.model_names
  prices = tmp_path / "model_prices.csv"
  prices.write_text("model_name,input_price_per_mtok,output_price_per_mtok\n" + "".join(
      f"{m},{0 if j == 0 else 1000 * j},{0 if j == 0 else 2000 * j}\n" for j, m in enumerate(names)))
  tokenizer = os.path.join(REPO, costs.DEFAULT_TOKENIZER)
  tokenizer = tokenizer if os.path.isdir(tokenizer) else None
  priced = router.with_costs(costs.for_routing(str(prices), names, tokenizer_dir=tokenizer))
  expected = priced.route(TEXTS[:3], cost_weight=2.0)
  out = _cli(f"--workdir={workdir}", f"--costs={prices}", "--cost_weight=2", "--json", *TEXTS[:3])
  assert out.returncode == 0, out.stderr
  records = [json.loads(line) for line in out.stdout.splitlines()]
  assert [r["model"] for r in records] == [r.model for r in expected]
  tokens = costs.token_counts(TEXTS[:3], tokenizer)
  for r, n_tok in zip(records, tokens):
    j = names.index(r["model"])
    assert r["expected_cost"] == pytest.approx((n_tok * 1000 * j + 256 * 2000 * j) / 1e6)


def test_cli_errors_are_one_clear_line(tmp_path):
  bad = tmp_path / "bad.jsonl"
  bad.write_text(json.dumps({"query": "fine"}) + "\n" + json.dumps({"text": "no field"}) + "\n")
  out = _cli(f"--workdir={tmp_path}", f"--input={bad}")
  assert out.returncode != 0
  assert out.stderr.strip().splitlines()[-1] == (
      f'route: {bad} line 2: needs a "query" or "prompt" string field')
  out = _cli(f"--workdir={tmp_path / 'nowhere'}", "hello")
  assert out.returncode != 0 and "Traceback" not in out.stderr
  assert f"--workdir {tmp_path / 'nowhere'} does not exist" in out.stderr


@pytest.mark.skipif(importlib.util.find_spec("torch") is not None,
                    reason="torch is installed, so transformers has no 'PyTorch was not found' notice")
def test_the_python_api_routes_quietly(text_run):
  # A library user (no CLI, no quiet_startup) imports the Router and routes a text: the
  # only output is what the user prints; transformers' torch notice stays silent, and
  # the user's own transformers setting is left unset.
  workdir, encoder_dir = text_run
  script = ("import os, sys\n"
            "from irt_jax.routing.router import Router\n"
            "router = Router.from_checkpoint(sys.argv[1], sys.argv[2])\n"
            "print(router.route(['What is 17 * 23?'])[0].model)\n"
            "print(os.environ.get('TRANSFORMERS_NO_ADVISORY_WARNINGS'))\n")
  env = {k: v for k, v in os.environ.items() if not k.startswith("TRANSFORMERS_")}
  done = subprocess.run([sys.executable, "-c", script, workdir, encoder_dir], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stderr
  model, setting = done.stdout.splitlines()
  assert model in Router.from_checkpoint(workdir, encoder_dir).model_names and setting == "None"
  assert "PyTorch" not in done.stderr + done.stdout, done.stderr
