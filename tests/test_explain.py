"""Router.explain: every number of an explanation against the same number computed by
hand from the run's params and data (a generated run, configs/test.py)."""

import json
import subprocess
import sys

import jax
import numpy as np
import pytest

from irt_jax import predictors
from irt_jax.data import resolve
from irt_jax.models import ensemble, mf
from irt_jax.numerics import pca_2d
from irt_jax.predictors import Predictor
from irt_jax.routing import explain
from irt_jax.routing.router import Router
from tests.conftest import REPO
from tests.fake_encoder import HashEncoder

pytest_plugins = ["tests.router_fixtures"]   # run, text_run, text_router: tiny trained runs


class RowEncoder:
  """'row<i>' -> the embedding of row i of the data (a training query's own vector)."""

  def __init__(self, embeddings):
    self.embeddings = np.asarray(embeddings, np.float32)
    self.dim = self.embeddings.shape[1]

  def encode(self, texts, batch_size=64, progress=False):
    return self.embeddings[[int(t[3:]) for t in texts]]


@pytest.fixture(scope="module")
def loaded(run):
  loaded_run = predictors.load(run)
  data = resolve.load_for_run(loaded_run.config, run)
  return loaded_run.predictor, data


def hand_items(predictor, embeddings):
  """(a, b) straight from the kind's IRT view, unjitted, in float64."""
  a, b = predictor.kind.irt.items(predictor.params, np.asarray(embeddings, np.float32),
                                  predictor.spec)
  return np.asarray(a, np.float64), np.asarray(b, np.float64)


def test_explanation_of_a_training_query_matches_hand_computation(run, loaded):
  predictor, data = loaded
  router = Router(predictor, RowEncoder(data.embeddings), workdir=run)
  train = data.split("train")
  a_train, b_train = hand_items(predictor, data.embeddings[train.queries])
  n = len(train.queries)
  hardest = int(train.queries[np.argmax(b_train)])
  least = int(train.queries[np.argmin(np.linalg.norm(a_train, axis=1))])
  out = router.explain([f"row{hardest}", f"row{least}"], neighbours=3)
  json.dumps(out)                                   # JSON-ready as it is
  logits = np.asarray(predictor.logits(data.embeddings[[hardest, least]]), np.float64)
  for q, row in enumerate((hardest, least)):
    e = out[q]
    got = np.array([m["logit"] for m in e["models"]])
    np.testing.assert_allclose(got, logits[q], atol=1e-5)   # one pass of items: a . theta - b
    np.testing.assert_allclose([m["p_correct"] for m in e["models"]], 1 / (1 + np.exp(-got)),
                               rtol=1e-12)
    assert [m["score"] for m in e["models"]] == [m["logit"] for m in e["models"]]
    order = np.argsort(-logits[q], kind="stable")
    names = predictor.model_names
    assert e["choice"]["model"] == names[order[0]] == router.route([f"row{row}"])[0].model
    assert e["choice"]["runner_up"] == names[order[1]]
    assert e["choice"]["margin"] == pytest.approx(logits[q, order[0]] - logits[q, order[1]],
                                                  abs=1e-5)
    a, b = hand_items(predictor, data.embeddings[[row]])
    ir = e["item_response"]
    assert ir["b"] == pytest.approx(b[0], abs=1e-5)
    assert ir["a_norm"] == pytest.approx(np.linalg.norm(a[0]), abs=1e-5)
    assert ir["reference_queries"] == n
    # logit = a . theta - b, each LLM's a . theta read back
    a_theta = np.array([m["a_theta"] for m in e["models"]])
    np.testing.assert_allclose(a_theta - ir["b"], logits[q], atol=1e-4)
    # nearest training query: itself, with its own benchmark and answers
    first = e["neighbours"][0]
    assert first["query_id"] == data.query_ids[row] and first["similarity"] == pytest.approx(1)
    assert first["benchmark"] == data.benchmark_names[data.benchmark[row]]
    labels = train.labels[list(train.queries).index(row)]
    assert first["correct"] == [m for m, y in zip(names, labels) if y == 1]
    assert first["wrong"] == [m for m, y in zip(names, labels) if y == 0]
    unit = data.embeddings[train.queries] / np.linalg.norm(data.embeddings[train.queries],
                                                            axis=1, keepdims=True)
    sim = unit @ (data.embeddings[row] / np.linalg.norm(data.embeddings[row]))
    expected = [data.query_ids[train.queries[i]] for i in np.argsort(-sim, kind="stable")[:3]]
    assert [x["query_id"] for x in e["neighbours"]] == expected
  # the hardest training query is above all the others; the least discriminating below
  assert out[0]["item_response"]["b_percentile"] == pytest.approx(100 * (n - 0.5) / n)
  assert out[1]["item_response"]["a_norm_percentile"] == pytest.approx(100 * 0.5 / n)


def test_cost_rule_score_margin_and_candidates(loaded):
  predictor, data = loaded
  names = predictor.model_names
  price = np.linspace(0.0, 1.1, len(names))
  router = Router.from_predictor(predictor, HashEncoder(predictor.input_dim), costs=price)
  texts = ["What is 17 * 23?", "Name the capital of Australia."]
  allowed = [names[1], names[4], names[9]]
  out = router.explain(texts, cost_weight=0.5, candidates=allowed)
  routes = router.route(texts, cost_weight=0.5, candidates=allowed)
  logits = np.asarray(predictor.logits(HashEncoder(predictor.input_dim).encode(texts)),
                      np.float64)
  for q, e in enumerate(out):
    score = 1 / (1 + np.exp(-logits[q])) - 0.5 * price
    np.testing.assert_allclose([m["score"] for m in e["models"]], score, atol=1e-6)
    assert [m["cost"] for m in e["models"]] == pytest.approx(price.tolist())
    assert [m["allowed"] for m in e["models"]] == [n in allowed for n in names]
    cols = [names.index(n) for n in allowed]
    ranked = sorted(cols, key=lambda j: -score[j])
    assert e["choice"]["model"] == names[ranked[0]] == routes[q].model
    assert e["choice"]["runner_up"] == names[ranked[1]] == routes[q].runner_up
    assert e["choice"]["margin"] == pytest.approx(score[ranked[0]] - score[ranked[1]], abs=1e-6)
    assert e["rule"] == {"cost_weight": 0.5, "score": "p_correct - cost_weight * cost"}
    # no workdir: no training queries, and the explanation says so
    assert "workdir" in e["neighbours"]["skipped"]
    assert e["item_response"]["b_percentile"] is None


def test_ensemble_members_probabilities_and_weights(run, loaded):
  """A hand-built recipe-like ensemble (the trained irtnet + an mf) with planted weights."""
  predictor, data = loaded
  m = len(predictor.model_names)
  mf_spec = mf.Spec(n_models=m, input_dim=predictor.input_dim, embed_dim=4, input_noise=0.0)
  mf_params = jax.tree.map(np.asarray, mf.init(jax.random.PRNGKey(3), mf_spec))
  member_models = (predictors.load(run).config.model.to_json(),
                   json.dumps({"name": "mf", "embed_dim": 4, "input_noise": 0.0}))
  spec = ensemble.Spec(n_models=m, input_dim=predictor.input_dim, members="runs/a,runs/b",
                       combine="per_llm", member_models=member_models)
  weight = np.stack([np.linspace(0.2, 1.0, m), np.linspace(0.5, -0.3, m)]).astype(np.float32)
  bias = np.linspace(-0.4, 0.4, m).astype(np.float32)
  params = {"members": {"m0": predictor.params, "m1": mf_params}, "weight": weight,
            "bias": bias, "rule": np.int32(2)}
  combined = Predictor(kind=ensemble.KIND, spec=spec, params=params,
                       model_names=predictor.model_names)
  encoder = HashEncoder(predictor.input_dim)
  text = "Prove that sqrt(2) is irrational."
  (e,) = Router.from_predictor(combined, encoder).explain([text])
  emb = encoder.encode([text])
  z0 = np.asarray(predictor.logits(emb), np.float64)[0]
  z1 = np.asarray(mf.logits(mf_params, emb, mf_spec), np.float64)[0]
  sig = lambda x: 1 / (1 + np.exp(-x))
  assert [x["kind"] for x in e["members"]] == ["irtnet", "mf"]
  assert [x["workdir"] for x in e["members"]] == ["runs/a", "runs/b"]
  for j, row in enumerate(e["models"]):
    np.testing.assert_allclose(row["member_p_correct"], [sig(z0[j]), sig(z1[j])], rtol=1e-4)
    np.testing.assert_allclose(row["member_weight"], weight[:, j], rtol=1e-6)
    assert row["bias"] == pytest.approx(bias[j])
    assert row["p_correct"] == pytest.approx(sig(weight[0, j] * z0[j] + weight[1, j] * z1[j]
                                                 + bias[j]), rel=1e-4)
  # the item-response view is the irtnet member's
  assert e["item_response"]["source"] == "member m0 (irtnet)"
  _, b = hand_items(predictor, emb)
  assert e["item_response"]["b"] == pytest.approx(b[0], abs=1e-5)


def test_abilities_map_and_benchmark_strengths(run, loaded):
  predictor, data = loaded
  router = Router(predictor, HashEncoder(predictor.input_dim), workdir=run)
  got = explain.abilities_map(router.explainer())
  theta = np.asarray(predictor.kind.irt.abilities(predictor.params), np.float64)
  coords, _ = pca_2d(theta)
  np.testing.assert_allclose(got["x"], coords[:, 0], atol=1e-4)
  np.testing.assert_allclose(got["y"], coords[:, 1], atol=1e-4)
  train = data.split("train")
  bench = data.benchmark[train.queries]
  for j in (0, 5):
    acc = []
    for b in range(len(data.benchmark_names)):
      lab = train.labels[bench == b]
      acc.append([(lab[lab[:, k] >= 0, k] == 1).mean() for k in range(lab.shape[1])])
    acc = np.array(acc)
    lead = acc[:, j] - acc.mean(1)
    best = int(np.argmax(lead))
    assert got["strength"][j] == {"benchmark": data.benchmark_names[best],
                                  "accuracy": pytest.approx(acc[best, j]),
                                  "lead": pytest.approx(lead[best])}


def test_percentile_counts_ties_half():
  values = np.array([1.0, 2.0, 2.0, 3.0])
  assert explain.percentile(values, 2.0) == 50.0
  assert explain.percentile(values, 0.0) == 0.0
  assert explain.percentile(values, 3.0) == 87.5
  assert explain.percentile(values, 9.0) == 100.0


def test_unreadable_training_data_still_explains(tmp_path, run, loaded):
  predictor, _ = loaded
  router = Router(predictor, HashEncoder(predictor.input_dim), workdir=str(tmp_path))
  (e,) = router.explain(["Write a haiku about rain."])
  assert str(tmp_path) in e["neighbours"]["skipped"]
  assert e["item_response"]["b_percentile"] is None and "reference" in e["item_response"]
  assert e["choice"]["model"] in predictor.model_names


@pytest.mark.slow
def test_cli_explain_prints_the_routers_explanation(text_run, text_router):
  """python -m irt_jax route --explain: one JSON explanation per query, the Router's."""
  workdir, _ = text_run
  texts = ["What is 17 * 23?", "Write a haiku about rain."]
  pick = list(text_router.model_names[1:4])
  expected = text_router.explain(texts, candidates=pick)
  out = subprocess.run([sys.executable, "-m", "irt_jax", "route", f"--workdir={workdir}", "--explain",
                        f"--candidates={','.join(pick)}", *texts], cwd=REPO,
                       capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr
  records = [json.loads(line) for line in out.stdout.splitlines()]
  assert [r["query"] for r in records] == texts
  assert [r["choice"] for r in records] == [e["choice"] for e in expected]
  assert [r["neighbours"] for r in records] == [e["neighbours"] for e in expected]
  assert records[0]["models"][0]["p_correct"] == pytest.approx(expected[0]["models"][0]["p_correct"])
  refused = subprocess.run([sys.executable, "-m", "irt_jax", "route", f"--workdir={workdir}",
                            "--explain", "--budget=1", "q"], cwd=REPO, capture_output=True,
                           text=True, timeout=120)
  assert refused.returncode != 0 and "--explain takes --cost_weight" in refused.stderr
  assert refused.stdout == ""


def test_nearest_on_principal_axes_finds_the_exact_neighbours():
  """Above SEARCH_DIMS dimensions the search goes through candidates on the principal
  axes; on data of lower rank (as sentence embeddings nearly are) it is the exact search."""
  from irt_jax.routing import reference
  rng = np.random.default_rng(4)
  emb = (rng.normal(size=(3000, 40)) @ rng.normal(size=(40, 200))).astype(np.float32)
  ref = reference.build_reference(emb, [str(i) for i in range(3000)], np.zeros(3000, int), ["b"],
                                  np.zeros((3000, 1), np.int8), None, None)
  assert ref.axes.shape == (200, reference.SEARCH_DIMS)
  unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
  for row in range(0, 3000, 97):
    query = emb[row] + 0.01 * rng.normal(size=200).astype(np.float32)
    got = ref.nearest(query, 5)
    sim = unit @ (query / np.linalg.norm(query))
    assert [i for i, _ in got] == list(np.argsort(-sim, kind="stable")[:5])
    assert got[0][0] == row
    np.testing.assert_allclose([s for _, s in got], np.sort(sim)[::-1][:5], rtol=1e-5)


def test_with_reference_explains_against_queries_of_your_own(loaded):
  from irt_jax.routing import reference
  predictor, data = loaded
  rows = np.arange(10)
  ref = reference.build_reference(data.embeddings[rows], [f"mine-{i}" for i in rows],
                                  np.zeros(10, int), ["my-bench"],
                                  np.ones((10, len(predictor.model_names)), np.int8), None,
                                  reference.item_source(predictor))
  router = Router(predictor, RowEncoder(data.embeddings)).with_reference(ref)
  (e,) = router.explain(["row3"], neighbours=2)
  assert e["neighbours"][0]["query_id"] == "mine-3" and e["neighbours"][0]["benchmark"] == "my-bench"
  assert e["neighbours"][0]["correct"] == list(predictor.model_names)
  assert e["item_response"]["reference_queries"] == 10
