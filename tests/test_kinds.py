"""Every model kind in the one harness: trains or fits, loads back, compares,
and matches hand or reference computations."""

import importlib
import json
import math
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import test as test_config
from irt_jax import evaluation
from irt_jax import models
from irt_jax import predictors
from irt_jax.routing import rules
from irt_jax import training
from irt_jax import metrics
from irt_jax.models import knn, logreg, mf, routerdc
from tests.conftest import REPO

KINDS = ("irtnet", "irtnet_linear", "mf", "knn", "logreg", "routerdc")


def tiny_config(kind: str):
  """The kind's own config file, shrunk to the test data and seconds of training."""
  config = importlib.import_module(f"configs.{kind}").get_config()
  config.data = test_config.get_config().data
  small = {"irtnet": test_config.get_config().model.to_dict(),
           "irtnet_linear": dict(ability_dim=4), "mf": dict(embed_dim=8),
           "routerdc": dict(hidden_dim=32, embed_dim=16)}
  config.model.update(small.get(kind, {}))
  if "optim" in config:
    config.optim.lr = 1e-2
    config.train.batch_cells = 256
    config.train.num_epochs = 8
  return config


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  root = tmp_path_factory.mktemp("kinds")
  out = {}
  for kind in KINDS:
    workdir = str(root / kind)
    out[kind] = (workdir, training.run(tiny_config(kind), workdir))
  return out


@pytest.mark.slow  # the `trained` fixture trains every kind
@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_beats_the_per_model_train_mean_on_auc(trained, kind):
  workdir, summary = trained[kind]
  run = predictors.load(workdir)
  assert run.kind.name == kind and run.model_names == list(summary["data"].model_names)
  data = summary["data"]
  train, test = data.split("train"), data.split("test")
  mean = np.where(train.mask, train.labels, 0).sum(0) / train.mask.sum(0)
  floor = metrics.auc(np.broadcast_to(mean, test.labels.shape)[test.mask], test.labels[test.mask])
  logits = run.predictor.logits(data.embeddings[test.queries])
  assert metrics.auc(logits[test.mask], test.labels[test.mask]) > floor + 0.02


@pytest.mark.slow  # the `trained` fixture trains every kind
def test_compare_tabulates_runs_of_every_kind(trained):
  workdirs = [trained[k][0] for k in KINDS]
  result = evaluation.compare(workdirs, "test")
  rows = {r["run"]: r for r in result["table"]}
  assert [rows[k]["kind"] for k in KINDS] == list(KINDS)
  assert {"oracle", "best_single", "random"} <= set(rows)
  for k in KINDS:  # each row is that run's own report, not a copy of the first
    assert rows[k]["auc"] == pytest.approx(result["runs"][k]["correctness"]["auc"])
  assert len({rows[k]["log_loss"] for k in KINDS}) == len(KINDS)
  # each run against the first: its point difference is the two reports' difference
  assert set(result["paired"]) == set(KINDS[1:]) and result["reference"] == KINDS[0]
  for k in KINDS[1:]:
    d = result["paired"][k]
    assert d["auc"]["diff"] == pytest.approx(rows[k]["auc"] - rows[KINDS[0]]["auc"], abs=1e-9)
    assert d["routing_micro"]["diff"] == pytest.approx(
        rows[k]["routing_micro"] - rows[KINDS[0]]["routing_micro"])
    assert d["log_loss"]["low"] <= d["log_loss"]["diff"] <= d["log_loss"]["high"]


@pytest.mark.slow
def test_eval_cli_compare_writes_one_table_and_refuses_other_datasets(trained, tmp_path):
  a, b, c = (trained[k][0] for k in ("irtnet", "knn", "mf"))
  out = subprocess.run([sys.executable, "eval.py", f"--workdir={a}", f"--compare={b},{c}",
                        f"--output_dir={tmp_path / 'cmp'}"], cwd=REPO, capture_output=True,
                       text=True, timeout=300)
  assert out.returncode == 0, out.stderr
  for name in ("irtnet", "knn", "mf", "oracle", "best_single", "random"):
    assert name in out.stdout
  assert "paired differences from irtnet (95% bootstrap interval" in out.stdout
  assert sum(l.startswith(("  knn: auc ", "  mf: auc ")) for l in out.stdout.splitlines()) == 2
  written = json.load(open(tmp_path / "cmp" / "compare.json"))
  assert [r["run"] for r in written["table"][:3]] == ["irtnet", "knn", "mf"]
  assert written["runs"]["knn"]["routing"]["micro"] == pytest.approx(
      evaluation.compare([b], "test")["runs"]["knn"]["routing"]["micro"])
  assert os.path.getsize(tmp_path / "cmp" / "plots" / "compare_routing_per_benchmark.png") > 5000
  # A run of other LLMs (a different dataset) is refused in one line, not scored
  # on columns that mean other models.
  other = tmp_path / "other"
  config = tiny_config("knn")
  config.data.synthetic.n_models = 5
  training.run(config, str(other))
  out = subprocess.run([sys.executable, "eval.py", f"--workdir={a}", f"--compare={other}"],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
  assert out.returncode != 0 and "Traceback" not in out.stderr
  assert out.stderr.strip().splitlines()[-1].startswith(f"eval: {other}: trained on other LLMs")


def test_knn_votes_over_the_k_nearest_known_answers():
  spec = knn.Spec(n_models=2, input_dim=2, k_grid=(2,))
  train_emb = np.array([[1, 0], [0.9, 0.1], [0, 1], [-1, 0]], np.float32)
  train_emb /= np.linalg.norm(train_emb, axis=1, keepdims=True)
  labels = np.array([[1, 0], [1, 1], [0, 1], [0, 0]], np.float32)
  mask = np.array([[1, 1], [1, 0], [1, 1], [1, 1]], np.float32)  # model 1 unknown on q1
  params = knn._params(train_emb, labels, mask, 2)
  # Query (1, 0.05): nearest two are q0 and q1. Model 0: labels 1, 1 -> (2 + prior 0.5) / 3.
  # Model 1: only q0 known (label 0); its prior is 1/3 (labels 0, 1, 0 on q0, q2, q3)
  # -> (0 + 1/3) / (1 + 1). Counting the unknown q1 as a 0 would give (0 + 1/3) / 3.
  p = jax.nn.sigmoid(knn.logits(params, jnp.array([[1.0, 0.05]]), spec))[0]
  np.testing.assert_allclose(p, [2.5 / 3, (1 / 3) / 2], rtol=1e-5)


def test_logreg_logits_equal_scikit_learn_decision_function():
  from sklearn.linear_model import LogisticRegression
  from irt_jax.data.io import Split
  rng = np.random.default_rng(0)
  x = rng.normal(size=(60, 3)).astype(np.float32)
  labels = (x @ np.array([[1.0, -1.0], [0.5, 0.0], [0.0, 2.0]]) > 0).astype(np.int8)
  labels[:5, 1] = -1
  params = logreg._fit_one_c(x, Split(np.arange(60, dtype=np.int32), labels), 1.0, 1000)
  spec = logreg.Spec(n_models=2, input_dim=3, c_grid=(1.0,), max_iter=1000)
  got = np.asarray(logreg.logits(params, jnp.asarray(x), spec))
  for j in range(2):
    known = labels[:, j] >= 0
    ref = LogisticRegression(C=1.0, max_iter=1000).fit(x[known], labels[known, j])
    np.testing.assert_allclose(got[:, j], ref.decision_function(x), rtol=1e-4, atol=1e-4)


def test_mf_logits_against_numpy_and_its_exact_irt_reading():
  spec = mf.Spec(n_models=3, input_dim=5, embed_dim=4, input_noise=0.0)
  params = jax.tree.map(np.asarray, mf.init(jax.random.PRNGKey(0), spec))
  v = np.random.default_rng(1).normal(size=(6, 5)).astype(np.float32)
  q = v @ params["proj_w"] + params["proj_b"]
  two = np.einsum("bd,md->bmd", q, params["model_emb"]) @ params["cls_w"] + params["cls_b"]
  want = two[..., 1] - two[..., 0]
  np.testing.assert_allclose(mf.logits(params, v, spec), want, rtol=1e-4, atol=1e-5)
  a, b = mf.items(params, v, spec)
  np.testing.assert_allclose(a @ mf.abilities(params).T - b[:, None], want, rtol=1e-4,
                             atol=1e-5)
  same = mf.with_abilities(params, mf.abilities(params))  # re-parameterised, same logits
  np.testing.assert_allclose(mf.logits(same, v, spec), want, rtol=1e-4, atol=1e-5)


def test_routerdc_sample_llm_loss_by_hand():
  s = jnp.array([[2.0, 1.0, 0.0, -1.0]])
  labels = jnp.array([[1.0, 0.0, 1.0, 0.0]])
  mask = jnp.array([[True, True, True, False]])   # model 3 unknown: never a negative
  got = routerdc.sample_llm_loss(s, labels, mask, top_k=3, last_k=3)
  neg = math.exp(1.0)
  want = -(2 - math.log(math.exp(2) + neg)) - (0 - math.log(math.exp(0) + neg))
  assert float(got) == pytest.approx(want, rel=1e-5)
  # top_k=1 keeps only the best-scored positive.
  one = routerdc.sample_llm_loss(s, labels, mask, top_k=1, last_k=3)
  assert float(one) == pytest.approx(-(2 - math.log(math.exp(2) + neg)), rel=1e-5)


def test_routing_chooses_on_logits_where_float32_probabilities_tie():
  logits = np.array([[30.0, 40.0, -5.0]], np.float32)
  proba = jax.nn.sigmoid(jnp.asarray(logits))
  assert float(proba[0, 0]) == float(proba[0, 1]) == 1.0  # saturated: a tie
  assert rules.choose_by_score(logits, np.ones((1, 3), bool)).tolist() == [1]


def test_every_registered_kind_has_a_config_with_its_name():
  for kind in models.names():
    config = importlib.import_module(f"configs.{kind}").get_config()
    assert config.model.name == kind
    models.get(kind).spec(config.model, 3, 8)  # every field the kind takes, no other


@pytest.mark.slow  # the `trained` fixture trains every kind
@pytest.mark.parametrize("kind", [k for k in KINDS if models.get(k).irt is not None])
def test_cold_start_adds_a_model_to_every_kind_with_abilities(trained, kind):
  """An existing model re-added from its own train answers predicts like itself."""
  from irt_jax.coldstart import ability as coldstart
  workdir, summary = trained[kind]
  run = predictors.load(workdir)
  data = summary["data"]
  train, test = data.split("train"), data.split("test")
  a, b = coldstart.item_parameters(run.predictor, data.embeddings[train.queries])
  prior = coldstart.prior_from_abilities(coldstart.abilities(run.predictor))
  known = train.mask[:, 0]
  theta, _ = coldstart.fit_ability(a[known], b[known], train.labels[known, 0], prior)
  bigger = coldstart.with_new_models(run.predictor, ["copy-of-0"], theta[None])
  logits = bigger.logits(data.embeddings[test.queries])
  assert logits.shape[1] == len(run.model_names) + 1
  np.testing.assert_allclose(logits[:, :-1], run.predictor.logits(data.embeddings[test.queries]),
                             rtol=1e-4, atol=1e-4)  # the old models are untouched
  mask = test.mask[:, 0]
  copy = metrics.auc(logits[mask, -1], test.labels[mask, 0])
  original = metrics.auc(logits[mask, 0], test.labels[mask, 0])
  assert copy > original - 0.1 and copy > 0.6
