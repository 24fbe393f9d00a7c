"""Cold start: MAP abilities, D-optimal proposals, the propose/answer/update
loop, and add_model end to end (CLI, new checkpoint, bad input)."""

import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.optimize

from configs import test as test_config
from irt_jax.coldstart import add as add_model
from irt_jax.coldstart import ability as coldstart
from irt_jax.data import io as data_lib
from irt_jax import predictors
from irt_jax import training
from tests.conftest import REPO


def _synthetic_items(rng, n, d):
  return rng.normal(size=(n, d)) * 1.2, rng.normal(size=n)


def _answers(rng, a, b, theta):
  return (rng.uniform(size=len(b)) < 1 / (1 + np.exp(-(a @ theta - b)))).astype(int)


def test_map_matches_a_generic_optimiser():
  rng = np.random.default_rng(0)
  d = 3
  prior = coldstart.prior_from_abilities(rng.normal(size=(30, d)) + [0.5, -0.2, 0.1])
  a, b = _synthetic_items(rng, 40, d)
  y = _answers(rng, a, b, np.array([1.0, -1.0, 0.5]))
  theta, precision = coldstart.fit_ability(a, b, y, prior)

  def objective(t):
    z = a @ t - b
    diff = t - prior.mean
    return np.sum(np.logaddexp(0, z) - y * z) + 0.5 * diff @ prior.precision @ diff

  ref = scipy.optimize.minimize(objective, prior.mean, method="BFGS", tol=1e-10).x
  np.testing.assert_allclose(theta, ref, atol=1e-3)
  # The returned precision is the Hessian at the optimum.
  p = 1 / (1 + np.exp(-(a @ ref - b)))
  np.testing.assert_allclose(precision, (a * (p * (1 - p))[:, None]).T @ a + prior.precision,
                             rtol=1e-3)
  # No answers: the prior mean.
  t0, _ = coldstart.fit_ability(np.zeros((0, d)), np.zeros(0), np.zeros(0), prior)
  np.testing.assert_allclose(t0, prior.mean, atol=1e-5)


def test_prior_shrinkage():
  rng = np.random.default_rng(1)
  theta = rng.normal(size=(5, 8))
  prior = coldstart.prior_from_abilities(theta, shrinkage=1.0)
  sample = np.cov(theta, rowvar=False, bias=True)
  np.testing.assert_allclose(np.linalg.inv(prior.precision),
                             np.trace(sample) / 8 * np.eye(8), rtol=1e-4)
  np.testing.assert_allclose(prior.mean, theta.mean(0))
  # Ledoit-Wolf: invertible though 5 models < 8 dimensions.
  assert np.isfinite(coldstart.prior_from_abilities(theta).precision).all()
  with pytest.raises(coldstart.ColdStartError, match="at least 2"):
    coldstart.prior_from_abilities(theta[:1])


def test_map_recovers_ability_better_than_prior_as_answers_grow():
  rng = np.random.default_rng(2)
  d = 4
  trained = rng.normal(size=(40, d)) * 1.5 + 0.3
  prior = coldstart.prior_from_abilities(trained)
  a, b = _synthetic_items(rng, 1024, d)
  errors = {k: [] for k in (8, 64, 512)}
  prior_err = []
  for _ in range(12):
    truth = rng.normal(size=d) * 1.5 + 0.3
    y = _answers(rng, a, b, truth)
    prior_err.append(np.linalg.norm(prior.mean - truth))
    for k in errors:
      theta, _ = coldstart.fit_ability(a[:k], b[:k], y[:k], prior)
      errors[k].append(np.linalg.norm(theta - truth))
  e = {k: np.mean(v) for k, v in errors.items()}
  assert e[8] < np.mean(prior_err)
  assert e[512] < e[64] < e[8]
  assert e[512] < 0.3 * np.mean(prior_err)


def test_propose_hand_case():
  # theta = 0, b = 0: every p = 1/2, weight 1/4; precision I. Gains log(1 + |a|^2 / 4):
  # [0, 3] first; then [0, 3]'s direction is known, so [2, 0] beats [0, 2.5] and [1, 0].
  # [0, 10] with b = -40 is almost surely answered correctly: no information.
  a = np.array([[1.0, 0], [0, 3], [2, 0], [0, 10], [0, 2.5]])
  b = np.array([0, 0, 0, -40, 0.0])
  picks = coldstart.propose(a, b, np.zeros(2), np.eye(2), 2)
  np.testing.assert_array_equal(picks, [1, 2])
  np.testing.assert_array_equal(coldstart.propose(a, b, np.zeros(2), np.eye(2), 1, exclude=[1]),
                                [4])
  # Here greedy is also the best pair by brute force (weights 1/4, ~0 at b = -40).
  pairs = [(i, j) for i in range(5) for j in range(i + 1, 5)]
  logdet = lambda ij: np.linalg.slogdet(
      np.eye(2) + sum(0.25 * (b[k] == 0) * np.outer(a[k], a[k]) for k in ij))[1]
  assert set(max(pairs, key=logdet)) == {1, 2}


def test_propose_trace_criterion_hand_case():
  # Only the first ability dimension matters (target diag(1, 0)); weights 1/4, cov I.
  # Gains w a'Ta / (1 + w|a|^2): [0, 3] -> 0, [1, 0] -> 0.2, [2, 0] -> 0.5.
  a = np.array([[0.0, 3], [1, 0], [2, 0]])
  b = np.zeros(3)
  target = np.diag([1.0, 0.0])
  picks = coldstart.propose(a, b, np.zeros(2), np.eye(2), 1, criterion="trace", target=target)
  np.testing.assert_array_equal(picks, [2])
  np.testing.assert_array_equal(coldstart.propose(a, b, np.zeros(2), np.eye(2), 1), [0])
  # Strata (benchmarks) take turns by their share of the pool: stratum 1's weak
  # queries are picked although stratum 0's are all more informative ([0, .4] over
  # [.5, 0], whose direction the first pick already informs).
  a2 = np.array([[3.0, 0], [0, 3], [2.5, 0], [0, 2.5], [0.5, 0], [0, 0.4]])
  strata = np.array([0, 0, 0, 0, 1, 1])
  np.testing.assert_array_equal(coldstart.propose(a2, np.zeros(6), np.zeros(2), np.eye(2), 3,
                                                  strata=strata), [0, 5, 1])
  with pytest.raises(ValueError, match="criterion"):
    coldstart.propose(a, b, np.zeros(2), np.eye(2), 1, criterion="e")


def test_adaptive_loop_beats_random_answers():
  rng = np.random.default_rng(3)
  d = 3
  prior = coldstart.prior_from_abilities(rng.normal(size=(30, d)))
  # A pool where half the queries are uninformative (tiny discrimination).
  a, b = _synthetic_items(rng, 400, d)
  a[::2] *= 0.05
  adaptive, random = [], []
  for _ in range(8):
    truth = rng.normal(size=d)
    y = _answers(rng, a, b, truth)
    rounds = list(coldstart.adaptive_rounds(a, b, lambda idx: y[idx], prior, batch=8, rounds=4))
    assert [len(r["asked"]) for r in rounds] == [8, 16, 24, 32]
    assert len(set(rounds[-1]["asked"].tolist())) == 32
    np.testing.assert_array_equal(rounds[-1]["labels"], y[rounds[-1]["asked"]])
    adaptive.append(np.linalg.norm(rounds[-1]["theta"] - truth))
    pick = rng.choice(len(b), 32, replace=False)
    random.append(np.linalg.norm(coldstart.fit_ability(a[pick], b[pick], y[pick], prior)[0]
                                 - truth))
  assert np.mean(adaptive) < np.mean(random)


# --- add_model end to end ------------------------------------------------------

@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
  config = test_config.get_config()
  config.train.num_epochs = 1
  workdir = str(tmp_path_factory.mktemp("base"))
  training.train_and_evaluate(config, workdir)
  return workdir


def _responses(run_dir, path, model=0, n=60, extra=""):
  run = predictors.load(run_dir)
  data = data_lib.load_dataset(os.path.join(run_dir, "synthetic_data"), require=())
  train = data.split("train")
  rows = np.flatnonzero(train.mask[:, model])[:n]
  lines = ["prompt_id,label"] + [f"{data.query_ids[train.queries[r]]},{train.labels[r, model]}"
                                 for r in rows]
  path.write_text("\n".join(lines) + "\n" + extra)
  return run, data, str(path)


def _cli(*args):
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  env.pop("XLA_FLAGS", None)
  return subprocess.run([sys.executable, "-m", "irt_jax", "add-model", *args], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=240)


def _listing(folder):
  return sorted((os.path.relpath(os.path.join(r, f), folder), os.path.getsize(os.path.join(r, f)))
                for r, _, fs in os.walk(folder) for f in fs)


@pytest.mark.slow
def test_add_model_cli_end_to_end(run_dir, tmp_path):
  old, data, responses = _responses(run_dir, tmp_path / "answers.csv")
  before = _listing(os.path.join(run_dir, "checkpoints"))
  out = str(tmp_path / "plus")
  done = _cli(f"--workdir={run_dir}", "--name=newcomer", f"--responses={responses}",
              f"--out={out}", "--propose=5")
  assert done.returncode == 0, done.stderr[-2000:]
  proposed = done.stdout.strip().splitlines()
  assert proposed[0] == "prompt_id,prompt" and len(proposed) == 6
  answered = {line.split(",")[0] for line in open(responses).read().splitlines()[1:]}
  assert not answered & {p.split(",")[0] for p in proposed[1:]}
  assert _listing(os.path.join(run_dir, "checkpoints")) == before  # old run untouched

  new = predictors.load(out)
  assert new.model_names == old.model_names + ["newcomer"]
  emb = data.embeddings[:50]
  old_logits, new_logits = old.predictor.logits(emb), new.predictor.logits(emb)
  np.testing.assert_allclose(new_logits[:, :-1], old_logits, rtol=1e-5, atol=1e-5)
  # The new column is the MAP ability under the item parameters of the old run.
  run = predictors.load(run_dir)
  ids, labels, _ = add_model.read_responses(responses)
  row = {q: i for i, q in enumerate(data.query_ids)}
  a, b = coldstart.item_parameters(run.predictor, data.embeddings[[row[q] for q in ids]])
  prior = coldstart.prior_from_abilities(coldstart.abilities(run.predictor))
  theta, _ = coldstart.fit_ability(a, b, labels, prior)
  a50, b50 = coldstart.item_parameters(run.predictor, emb)
  # (float32 Newton in another process, with other XLA flags: 1e-3 apart at most)
  np.testing.assert_allclose(new_logits[:, -1], a50 @ theta - b50, rtol=1e-3, atol=2e-3)
  assert np.abs(theta - prior.mean).max() > 0.05  # the answers moved it off the prior
  # It routes among the old models plus the new one.
  assert "newcomer" in new.model_names and new.predictor.proba(emb).shape == (50, 13)

  # Bad input: an existing name -> one line, non-zero exit.
  again = _cli(f"--workdir={run_dir}", f"--name={old.model_names[0]}",
               f"--responses={responses}", f"--out={tmp_path / 'x'}")
  assert again.returncode != 0
  assert again.stderr.strip().splitlines()[-1].startswith("add-model: ")
  assert "already has a model named" in again.stderr and "Traceback" not in again.stderr


def test_add_model_bad_inputs(run_dir, tmp_path):
  _, data, good = _responses(run_dir, tmp_path / "a.csv", n=10)
  with pytest.raises(data_lib.DataError, match=r"label must be 0 or 1; row 12 has '2'"):
    add_model.add(run_dir, "n1", _responses(run_dir, tmp_path / "b.csv", n=10,
                                            extra=f"{data.query_ids[0]}x,2\n")[2])
  with pytest.raises(data_lib.DataError, match=r"not seen, e.g. \['nope'\], come without"):
    add_model.add(run_dir, "n2", _responses(run_dir, tmp_path / "c.csv", n=10,
                                            extra="nope,1\n")[2])
  with pytest.raises(data_lib.DataError, match="answered twice"):
    text = open(good).read()
    (tmp_path / "d.csv").write_text(text + text.splitlines()[1] + "\n")
    add_model.add(run_dir, "n3", str(tmp_path / "d.csv"))
  # Unseen text with no encoder recorded (shipped embeddings): refused, says why.
  (tmp_path / "e.csv").write_text("prompt_id,label,prompt\nbrand-new,1,What is 2+2?\n")
  with pytest.raises(coldstart.ColdStartError, match="--encoder_dir"):
    add_model.add(run_dir, "n4", str(tmp_path / "e.csv"))
  with pytest.raises(coldstart.ColdStartError, match="--out must differ"):
    add_model.add(run_dir, "n5", good, out=run_dir)
  with pytest.raises(coldstart.ColdStartError, match="--responses"):
    add_model.add(run_dir, "n6", None)
  assert not os.path.exists(add_model.default_out(run_dir, "n1"))


def test_add_model_propose_only_and_loop(run_dir, tmp_path):
  """propose -> answer -> update through the API: each round proposes new queries
  and the written run's ability moves with the answers."""
  out = []

  class Sink:
    def write(self, s):
      out.append(s)

  result = add_model.add(run_dir, "fresh", None, propose=4, stream=Sink())
  assert len(result["proposed"]) == 4 and "out" not in result
  data = data_lib.load_dataset(os.path.join(run_dir, "synthetic_data"), require=())
  train = data.split("train")
  label_of = {data.query_ids[q]: int(train.labels[i, 1]) for i, q in enumerate(train.queries)
              if train.labels[i, 1] >= 0}
  asked = [q for q in result["proposed"] if q in label_of]
  path = tmp_path / "loop.csv"
  path.write_text("prompt_id,label\n" + "".join(f"{q},{label_of[q]}\n" for q in asked))
  second = add_model.add(run_dir, "fresh", str(path), out=str(tmp_path / "r1"), propose=4,
                         stream=Sink())
  assert not set(second["proposed"]) & set(asked)
  assert not np.allclose(second["theta"], result["theta"])
