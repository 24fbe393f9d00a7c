"""The cost rules of routing: `linear` (P - cost_weight * cost) and `balance`
(Avengers-Pro, arXiv 2508.12631: alpha * min-max normalised P + (1 - alpha) *
(1 - cost / max cost) over the allowed models), in the Router, the command
line and the cost frontier."""

import json
import shutil
import subprocess
import sys
import types

import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.cluster import KMeans

from irt_jax.evaluation import cost_frontier as cf
from irt_jax.models import cluster
from irt_jax.routing import rules
from irt_jax.routing.router import Router, RouterError
from tests.conftest import REPO
from tests.test_cluster import Cfg, generated, spec

pytest_plugins = ["tests.router_fixtures"]   # text_run, text_router: shared with test_router


def logit(p):
  p = np.asarray(p, np.float64)
  return np.log(p / (1 - p))


class TablePredictor:
  """Logits given by hand: text 'q<i>' (through RowEncoder) reads row i."""

  def __init__(self, names, table):
    self.model_names, self.input_dim = tuple(names), 1
    self.table = np.asarray(table, np.float64)

  def logits(self, emb):
    return self.table[np.asarray(emb[:, 0], np.int64)]


class RowEncoder:
  """Text 'q<i>' -> row i of `rows` (an index by default)."""

  def __init__(self, rows=None):
    self.rows = rows

  def encode(self, texts, batch_size=64, progress=False):
    i = np.array([int(t[1:]) for t in texts])
    return np.asarray(i[:, None] if self.rows is None else self.rows[i], np.float32)


def table_router(p, costs, names=None):
  names = names or [f"m{j}" for j in range(len(p[0]))]
  return Router.from_predictor(TablePredictor(names, logit(p)), RowEncoder(), costs=costs)


# ------------------------------------------------------------------ by hand

def test_linear_and_balance_pick_different_models_by_hand():
  # P 0.9, 0.7, 0.5; cost 10, 2, 1.
  # linear, w = 0.01: 0.9 - 0.1 = 0.8, 0.7 - 0.02 = 0.68, 0.5 - 0.01 = 0.49 -> m0.
  # balance, alpha = 0.5: P -> 1, 0.5, 0; cost -> 1 - c / 10 = 0, 0.8, 0.9;
  # 0.5 * (1, 0.5, 0) + 0.5 * (0, 0.8, 0.9) = 0.5, 0.65, 0.45 -> m1.
  router = table_router([[0.9, 0.7, 0.5]], costs=[10.0, 2.0, 1.0])
  assert router.route(["q0"], cost_weight=0.01)[0].model == "m0"
  (r,) = router.route(["q0"], rule="balance", alpha=0.5)
  assert (r.model, r.runner_up, r.expected_cost) == ("m1", "m0", 2.0)
  score = rules.rule_score(logit([[0.9, 0.7, 0.5]]), np.array([10.0, 2.0, 1.0]), 0.0,
                           rule="balance", alpha=0.5)
  np.testing.assert_allclose(score, [[0.5, 0.65, 0.45]])
  # Scale-free: prices in another unit (x 1000) leave the balance choice as it
  # is; the linear rule at the same weight now buys the cheapest.
  dear = router.with_costs([10_000.0, 2_000.0, 1_000.0])
  assert dear.route(["q0"], rule="balance", alpha=0.5)[0].model == "m1"
  assert dear.route(["q0"], cost_weight=0.01)[0].model == "m2"
  # explain: the rule, each model's score and the margin over the runner-up.
  (e,) = router.explain(["q0"], rule="balance", alpha=0.5)
  assert e["rule"]["cost_rule"] == "balance" and e["rule"]["alpha"] == 0.5
  assert "cost_weight" not in e["rule"]
  np.testing.assert_allclose([m["score"] for m in e["models"]], [0.5, 0.65, 0.45])
  assert e["choice"]["model"] == "m1" and e["choice"]["margin"] == pytest.approx(0.15)
  # rank_logits (the service's fallback order) by the same score: m1, m0, m2.
  assert router.rank_logits(logit([[0.9, 0.7, 0.5]]), texts=["q0"], rule="balance",
                            alpha=0.5) == [["m1", "m0", "m2"]]


def test_balance_normalises_over_the_allowed_candidates_only():
  # m0 (P 0.95, cost 100) is not a candidate. Over m1..m3 (P 0.8, 0.7, 0.5; cost 4, 1, 0.5):
  # P -> 1, 2/3, 0; cost -> 0, 0.75, 0.875; alpha 0.5: 0.5, 0.708, 0.4375 -> m2.
  # Normalised over all four (P over 0.5..0.95, cost over 100) it would be
  # 0.5 * (0.667, 0.444, 0) + 0.5 * (0.96, 0.99, 0.995) = 0.813, 0.717, 0.498 -> m1.
  p = np.array([[0.95, 0.8, 0.7, 0.5]])
  cost = np.array([100.0, 4.0, 1.0, 0.5])
  planted = cluster.balance_scores(p[0], cost, 0.5)          # over every model
  assert int(np.argmax(planted[1:])) + 1 == 1
  router = table_router(p, costs=cost)
  (r,) = router.route(["q0"], rule="balance", alpha=0.5, candidates=["m1", "m2", "m3"])
  assert (r.model, r.runner_up) == ("m2", "m1")
  # The same for models without an answer (known mask) in the evaluator's rule.
  known = np.array([[False, True, True, True]])
  assert rules.choose_with_cost(logit(p), cost, 0.0, known, rule="balance", alpha=0.5)[0] == 2
  (e,) = router.explain(["q0"], rule="balance", alpha=0.5, candidates=["m1", "m2", "m3"])
  np.testing.assert_allclose([m["score"] for m in e["models"]][1:],
                             [0.5, 0.5 * 2 / 3 + 0.5 * 0.75, 0.5 * 0.875])


def test_alpha_one_is_the_argmax_of_p_and_zero_the_cheapest():
  rng = np.random.default_rng(0)
  z = rng.normal(0, 2, size=(40, 6))
  z[:5] = [40.0, 50.0, 45.0, 38.0, 20.0, 49.0]     # P saturates to 1.0: ties broken by logit
  cost = rng.uniform(0.1, 5.0, size=(40, 6))
  router = Router.from_predictor(TablePredictor([f"m{j}" for j in range(6)], z), RowEncoder(),
                                 costs=cost)
  texts = [f"q{i}" for i in range(40)]
  for cand in (None, ["m0", "m2", "m3", "m5"]):
    plain = router.route_logits(z, candidates=cand, texts=texts)
    top = router.route_logits(z, candidates=cand, texts=texts, rule="balance", alpha=1.0)
    assert [(r.model, r.runner_up) for r in top] == [(r.model, r.runner_up) for r in plain]
    cheap = rules.choose_with_cost(z, cost, np.inf, router.allowed(cand))   # the cheapest
    low = router.route_logits(z, candidates=cand, texts=texts, rule="balance", alpha=0.0)
    assert [r.model for r in low] == [f"m{j}" for j in cheap]
  assert top[0].model == "m5"                      # logit 49 beats 45 among the candidates
  # Between the two, the choice moves: some query goes neither to argmax P nor the cheapest.
  mid = router.route_logits(z, texts=texts, rule="balance", alpha=0.6)
  ends = zip(mid, z.argmax(1), cost.argmin(1))
  assert any(m.model not in (f"m{a}", f"m{b}") for m, a, b in ends)


def test_bad_rules_and_alphas_are_one_line_router_errors():
  router = table_router([[0.9, 0.7]], costs=[2.0, 1.0])
  bad = [({"rule": "balance", "alpha": 1.5}, r"alpha must be a number in \[0, 1\], got 1.5"),
         ({"rule": "balance", "alpha": float("nan")}, r"alpha must be a number in \[0, 1\]"),
         ({"rule": "balance", "alpha": -0.1}, r"alpha must be a number in \[0, 1\]"),
         ({"rule": "balance"}, "'balance' needs alpha"),
         ({"rule": "cheapest"}, "unknown cost rule 'cheapest'; choose one of linear, balance"),
         ({"alpha": 0.5}, "alpha is the weight of the cost rule 'balance'"),
         ({"rule": "balance", "alpha": 0.5, "cost_weight": 0.2}, "not cost_weight or budget"),
         ({"rule": "balance", "alpha": 0.5, "budget": 1.5}, "not cost_weight or budget")]
  for kwargs, message in bad:
    with pytest.raises(RouterError, match=message) as err:
      router.route(["q0"], **kwargs)
    assert "\n" not in str(err.value)
  with pytest.raises(RouterError, match="alpha must be"):
    router.rank_logits(logit([[0.9, 0.7]]), texts=["q0"], rule="balance", alpha=2)
  with pytest.raises(RouterError, match="alpha must be"):
    router.explain(["q0"], rule="balance", alpha=2)
  free = table_router([[0.9, 0.7]], costs=None)
  with pytest.raises(RouterError, match="rule 'balance' need costs"):
    free.route(["q0"], rule="balance", alpha=0.5)
  with pytest.raises(RouterError, match="rule balance needs costs"):
    free.rank_logits(logit([[0.9, 0.7]]), rule="balance", alpha=0.5)


# ------------------------------------------------------------------ Avengers-Pro

def avengers_pro(data, k, seed, smoothing, cost, alpha):
  """Avengers-Pro written plainly: k-means on unit train embeddings, each cluster's
  smoothed accuracy per model, the score alpha * (acc - min) / (max - min) +
  (1 - alpha) * (1 - cost / max cost) within the query's cluster, argmax."""
  unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)
  train = data.split("train")
  km = KMeans(n_clusters=k, random_state=seed, n_init=2).fit(unit(data.embeddings[train.queries]))
  m = train.labels.shape[1]
  prior = np.array([(train.labels[train.mask[:, j], j] == 1).mean() for j in range(m)])
  choice = np.zeros(k, np.int64)
  for c in range(k):
    acc = np.zeros(m)
    for j in range(m):
      y = train.labels[(km.labels_ == c) & train.mask[:, j], j]
      acc[j] = (y.sum() + smoothing * prior[j]) / (len(y) + smoothing)
    score = (alpha * (acc - acc.min()) / (acc.max() - acc.min())
             + (1 - alpha) * (1 - cost / cost.max()))
    choice[c] = int(np.argmax(score))
  return lambda queries: choice[km.predict(unit(data.embeddings[queries]))]


class ClusterPredictor:
  def __init__(self, params, spec_, names):
    self.params, self.spec, self.model_names, self.input_dim = params, spec_, names, 16

  def logits(self, emb):
    return np.asarray(cluster.logits(self.params, jnp.asarray(emb), self.spec))


def test_cluster_kind_with_the_balance_rule_is_avengers_pro():
  data = generated(seed=2)
  params = cluster.fit(spec([6]), data, Cfg, None)
  cost = np.array([3.0, 0.5, 8.0, 1.0, 2.0])
  router = Router.from_predictor(ClusterPredictor(params, spec([6]), data.model_names),
                                 RowEncoder(data.embeddings), costs=cost)
  test = data.split("test")
  texts = [f"q{i}" for i in test.queries]
  picks = []
  for alpha in (0.2, 0.5, 0.8):
    got = [data.model_names.index(r.model) for r in router.route(texts, rule="balance",
                                                                   alpha=alpha)]
    want = avengers_pro(data, 6, Cfg.seed, 1.0, cost, alpha)(test.queries)
    np.testing.assert_array_equal(got, want)
    picks.append(got)
  # Not a trivial case: alpha moves the choices, and they are not the argmax of P.
  assert picks[0] != picks[2]
  assert picks[1] != [data.model_names.index(r.model) for r in router.route(texts)]


# ------------------------------------------------------------------ command line

def _cli(*args):
  return subprocess.run([sys.executable, "-m", "irt_jax", "route", *args], cwd=REPO,
                        capture_output=True, text=True, timeout=300)


def test_cli_bad_rule_or_alpha_is_one_line_and_nonzero(tmp_path):
  for args, line in (
      (["--cost_rule=balance", "--alpha=1.5", f"--costs={tmp_path}/c.json"],
       "route: alpha must be a number in [0, 1], got 1.5"),
      (["--cost_rule=cheapest"], "route: unknown cost rule 'cheapest'; choose one of linear, "
                                 "balance"),
      (["--cost_rule=balance", "--alpha=0.5"], "route: --cost_rule=balance needs --costs (a "
                                               "JSON file model name -> cost or a "
                                               "model_prices.csv)")):
    out = _cli(f"--workdir={tmp_path}", *args, "hello")
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr.strip().splitlines() == [line], out.stderr


@pytest.mark.slow  # trains the shared text run once per session (test_router's slow CLI test too)
def test_cli_routes_with_the_balance_rule(text_run, text_router, tmp_path):
  workdir, _ = text_run
  names = text_router.model_names
  prices = {m: float(1 + 3 * j) for j, m in enumerate(names)}
  path = tmp_path / "costs.json"
  path.write_text(json.dumps(prices))
  texts = ["What is 17 * 23?", "Write a haiku about rain.", "Name the capital of Australia."]
  out = _cli(f"--workdir={workdir}", f"--costs={path}", "--cost_rule=balance", "--alpha=0.6",
             "--json", *texts)
  assert out.returncode == 0, out.stderr
  records = [json.loads(line) for line in out.stdout.splitlines()]
  expected = text_router.with_costs(prices).route(texts, rule="balance", alpha=0.6)
  assert [r["model"] for r in records] == [r.model for r in expected]
  assert [r["expected_cost"] for r in records] == [prices[r.model] for r in expected]
  # The flag is applied: alpha 0.6 leaves both the likeliest and the cheapest model.
  assert [r["model"] for r in records] != [r.model for r in text_router.route(texts)]
  assert {r["model"] for r in records} != {names[0]}


# ------------------------------------------------------------------ the cost frontier

def test_frontier_sweeps_the_balance_rule_by_hand():
  # test_costs' hand case: model 0 strong and dear (10), model 1 cheap (1).
  labels = np.array([[1, 0], [1, 1], [0, 1]], np.int8)
  proba = np.array([[0.9, 0.2], [0.8, 0.7], [0.4, 0.6]])
  cost = np.array([10.0, 1.0])
  plain = cf.frontier(logit(proba), labels, cost, np.array([0, 1]), weights=[0.0, 0.02, np.inf])
  assert "balance" not in plain                    # the default output is unchanged
  out = cf.frontier(logit(proba), labels, cost, np.array([0, 1]), weights=[0.0, 0.02, np.inf],
                    alphas=[0.0, 0.4, 0.5, 1.0])
  assert {k: v for k, v in out.items() if k != "balance"} == plain
  # Per query the likelier model scores alpha, the cheap one 0.9 * (1 - alpha) (+ alpha
  # when it is also the likelier): q0, q1 go to model 0 once alpha > 0.9 / 1.9 = 0.474;
  # q2 always to model 1. alpha 0, 0.4: all model 1 (cost 1, acc 2/3); 0.5, 1: [0, 0, 1]
  # (cost 7, acc 1). The linear rule's (4, 1) point ([0, 1, 1]) is out of its reach.
  b = out["balance"]
  pts = [(p["alpha"], p["cost"], p["accuracy"]) for p in b["points"]]
  np.testing.assert_allclose(pts, [(0, 1, 2 / 3), (0.4, 1, 2 / 3), (0.5, 7, 1), (1, 7, 1)])
  # Hull (1, 2/3) -> (7, 1), flat to 10 (the same range as the linear sweep's):
  # (6 * (2/3 + 1) / 2 + 3) / 9.
  assert b["aiq"] == pytest.approx(8 / 9)
  assert b["peak_accuracy"] == 1.0 and b["cost_to_match_best_single"] == pytest.approx(1.0)
  # Field metrics against the best single (model 0: cost 10, acc 2/3): PerfGain
  # (1 - 2/3) / (2/3); CostSave 1 - 1/10; both points on the Pareto front.
  assert b["field"] == {"perf_gain": pytest.approx(0.5), "cost_save": pytest.approx(0.9),
                        "pareto_dist": pytest.approx(0.0)}
  lines = cf.CostFrontierEvaluator().text({**out, "cost_source": "x", "cost_unit": "u"})
  assert any(line.startswith("  balance rule (Avengers-Pro") for line in lines)
  assert any("balance rule, field (LLMRouterBench): PerfGain +50.00%" in l for l in lines)


def test_evaluator_option_adds_the_balance_sweep(synthetic_dir, tmp_path):
  from configs import test as test_config
  from irt_jax.data import io as data_lib
  from irt_jax.evaluation import evaluators
  folder = str(tmp_path / "data")
  shutil.copytree(synthetic_dir, folder)
  data = data_lib.load_dataset(folder, require=())
  (tmp_path / "data" / "model_prices.csv").write_text(
      "model_name,input_price_per_mtok,output_price_per_mtok\n"
      + "".join(f"{m},{1 + i},{2 * (1 + i)}\n" for i, m in enumerate(data.model_names)))
  config = test_config.get_config()
  config.data.dir = folder
  test = data.split("test")
  logits = np.where(test.labels == 1, 1.0, -1.0) + np.random.default_rng(0).normal(
      size=test.labels.shape)
  pred = evaluators.Predictions(logits=logits.astype(np.float32), labels=test.labels,
                                benchmark=data.benchmark[test.queries],
                                benchmark_names=data.benchmark_names)

  def run(options):
    ctx = evaluators.Context(run=types.SimpleNamespace(config=config, workdir=str(tmp_path)),
                             data=data, split="test", predictions=pred, options=options)
    return evaluators.get(["cost_frontier"])[0].run(ctx)

  plain = {"tokenizer_dir": None, "output_tokens": 0}
  assert "balance" not in run(plain)
  out = run({**plain, "balance_frontier": True})
  alphas = [p["alpha"] for p in out["balance"]["points"]]
  assert alphas[0] == 0.0 and alphas[-1] == 1.0 and len(alphas) == len(cf.BALANCE_ALPHAS)
  # alpha 1 routes as cost_weight 0; alpha 0 as cost_weight inf (the cheapest).
  first, last = out["balance"]["points"][-1], out["points"][0]
  assert (first["cost"], first["accuracy"]) == (last["cost"], last["accuracy"])
  cheap, inf = out["balance"]["points"][0], out["points"][-1]
  assert (cheap["cost"], cheap["accuracy"]) == (inf["cost"], inf["accuracy"])
  assert set(out["balance"]["field"]) == {"perf_gain", "cost_save", "pareto_dist"}
