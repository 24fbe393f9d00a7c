"""The recipe (an `ensemble` run) learns from feedback and takes a new LLM:
coldstart/members.py through feedback.update and coldstart.add."""

import numpy as np
import pytest
from scipy import optimize

from configs import ensemble as ensemble_config
from irt_jax import predictors
from irt_jax.coldstart import ability, add, feedback, members
from irt_jax.data import resolve
from irt_jax.numerics import sigmoid
from irt_jax import training
from tests.test_kinds import tiny_config


def test_map_logistic_is_the_penalised_optimum():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(40, 3))
  y = (rng.uniform(size=40) < sigmoid(x @ np.array([1.0, -2.0, 0.5]))).astype(float)
  mean, precision = np.array([0.3, 0.0, -0.2, 0.1]), np.array([2.0, 0.5, 1.0, 4.0])
  got = members.map_logistic(x, y, mean, precision)
  xb = np.hstack([x, np.ones((40, 1))])

  def objective(t):
    z = xb @ t
    return (np.logaddexp(0, z) - y * z).sum() + 0.5 * (precision * (t - mean) ** 2).sum()
  want = optimize.minimize(objective, mean, method="BFGS", options={"gtol": 1e-10}).x
  np.testing.assert_allclose(got, want, atol=1e-5)
  # From a start far from the data (a belief gone wrong) under a weak prior: a full
  # Newton step from there overshoots; the halved steps reach the optimum.
  far, weak = np.array([4.0, -4.0, 4.0, 12.0]), np.full(4, 1e-3)

  def far_objective(t):
    z = xb @ t
    return (np.logaddexp(0, z) - y * z).sum() + 0.5 * (weak * (t - far) ** 2).sum()
  want = optimize.minimize(far_objective, np.zeros(4), method="BFGS", options={"gtol": 1e-10}).x
  np.testing.assert_allclose(members.map_logistic(x, y, far, weak), want, atol=1e-4)
  # Bias only (no features), by hand: (k - n sigmoid(b)) = precision (b - mean) at the optimum.
  b = members.map_logistic(np.zeros((10, 0)), np.r_[np.ones(7), np.zeros(3)], np.array([0.0]),
                           np.array([3.0]))[0]
  assert 7 - 10 * sigmoid(b) == pytest.approx(3.0 * b, abs=1e-9)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  root = tmp_path_factory.mktemp("learns")
  member = {}
  for kind in ("irtnet", "logreg", "knn", "cluster"):
    member[kind] = str(root / kind)
    config = tiny_config(kind)
    if kind == "knn":
      config.model.update(k_grid=(10,), weighting_grid=("uniform",), smoothing_grid=(1.0,))
    training.run(config, member[kind])
  out = {}
  for name, kinds in (("recipe", ("irtnet", "logreg")), ("with_knn", ("irtnet", "logreg", "knn")),
                      ("with_cluster", ("irtnet", "cluster"))):
    config = ensemble_config.get_config()
    config.data = tiny_config("logreg").data
    config.model.members = ",".join(member[k] for k in kinds)
    config.model.combine = "auto"
    out[name] = str(root / name)
    training.run(config, out[name])
  return out


def _feedback_log(path, data, model, n=240):
  """`model` judged wrong on n train queries (its router's belief is now too high)."""
  train = data.split("train")
  writer = feedback.FeedbackLog(path)
  for q in train.queries[:n]:
    writer.append({"query": data.prompts[q], "model": data.model_names[model], "correct": 0})
  writer.close()
  return path


@pytest.mark.slow  # trains three members and two ensembles
def test_feedback_updates_the_members_that_can_and_leaves_the_others(runs, tmp_path):
  run = predictors.load(runs["with_knn"])
  data = resolve.load_for_run(run.config, runs["with_knn"], require=())
  log = _feedback_log(str(tmp_path / "f.jsonl"), data, model=2)
  report = feedback.update(runs["with_knn"], log, str(tmp_path / "out"), heldout_fraction=0.25)
  assert [line.split(" ")[1] for line in report["members"]] == ["irtnet:", "logreg:", "knn:"]
  assert "taken as labels (in place on training queries" in report["members"][2]
  held = report["heldout_report"]
  assert held["after"]["log_loss"] < held["before"]["log_loss"]   # all held-out answers are 0
  new = predictors.load(str(tmp_path / "out")).predictor
  old_m, new_m = members.members_of(run.predictor), members.members_of(new)
  theta_old, theta_new = (ability.abilities(p) for p in (old_m[0], new_m[0]))
  np.testing.assert_allclose(np.delete(theta_new, 2, 0), np.delete(theta_old, 2, 0), rtol=1e-6)
  assert np.linalg.norm(theta_new[2] - theta_old[2]) > 1e-3
  w_old, w_new = old_m[1].params["w"], new_m[1].params["w"]
  np.testing.assert_array_equal(np.delete(w_new, 2, 1), np.delete(w_old, 2, 1))
  assert np.abs(w_new[:, 2] - w_old[:, 2]).max() > 1e-4
  k_old, k_new = old_m[2].params, new_m[2].params                  # knn: the judged cells set
  for key in ("labels", "mask"):
    np.testing.assert_array_equal(np.delete(k_new[key], 2, 1), np.delete(k_old[key], 2, 1))
  changed = (k_new["labels"][:, 2] != k_old["labels"][:, 2]) | (k_new["mask"][:, 2] != k_old["mask"][:, 2])
  assert 0 < changed.sum() <= report["fitted_records"] and (k_new["labels"][changed, 2] == 0).all()
  assert "added_emb" not in k_new                                  # all on training queries
  assert k_new["prior"][2] < k_old["prior"][2]
  np.testing.assert_array_equal(np.delete(k_new["prior"], 2), np.delete(k_old["prior"], 2))
  w_old, w_new = run.predictor.params["weight"], new.params["weight"]  # combination: LLM 2 only
  np.testing.assert_array_equal(np.delete(w_new, 2, 1), np.delete(w_old, 2, 1))
  assert np.abs(w_new[:, 2] - w_old[:, 2]).max() > 1e-4
  test = data.split("test")
  emb = data.embeddings[test.queries]
  assert new.logits(emb)[:, 2].mean() < run.predictor.logits(emb)[:, 2].mean() - 0.1


@pytest.mark.slow  # trains three members and two ensembles
def test_add_model_extends_the_recipe_and_refuses_a_member_that_cannot(runs, tmp_path):
  run = predictors.load(runs["recipe"])
  data = resolve.load_for_run(run.config, runs["recipe"], require=())
  train = data.split("train")
  rows = np.flatnonzero(train.mask[:, 0])[:200]
  answers = tmp_path / "answers.csv"
  answers.write_text("prompt_id,label\n" + "".join(
      f"{data.query_ids[train.queries[r]]},{train.labels[r, 0]}\n" for r in rows))
  result = add.add(runs["recipe"], "twin", str(answers), str(tmp_path / "plus"))
  assert result["answers"] == 200 and len(result["members"]) == 2
  new = predictors.load(str(tmp_path / "plus")).predictor
  assert list(new.model_names) == list(data.model_names) + ["twin"]
  weight = new.params["weight"]
  np.testing.assert_allclose(weight[:, -1], weight[:, :-1].mean(1), rtol=1e-6)
  test = data.split("test")
  z = new.logits(data.embeddings[test.queries])
  np.testing.assert_allclose(z[:, :-1], run.predictor.logits(data.embeddings[test.queries]),
                             rtol=1e-5, atol=1e-5)             # the old LLMs as they were
  assert np.corrcoef(z[:, -1], z[:, 0])[0, 1] > 0.5            # the twin reads like model 0
  # With the kNN member: it takes the twin's answers as neighbours (its column reads like
  # model 0's wherever they are near); a member that cannot learn is refused by name.
  result = add.add(runs["with_knn"], "twin", str(answers), str(tmp_path / "plus2"))
  assert "taken as labels (in place on training queries" in result["members"][2]
  knn_new = members.members_of(predictors.load(str(tmp_path / "plus2")).predictor)[2]
  knn_old = members.members_of(predictors.load(runs["with_knn"]).predictor)[2]
  emb = data.embeddings[train.queries[rows]]
  z_new, z_old = knn_new.logits(emb), knn_old.logits(emb)
  np.testing.assert_allclose(z_new[:, :-1], z_old, rtol=1e-5, atol=1e-5)
  right = train.labels[rows, 0] == 1
  assert z_new[right, -1].mean() > z_new[~right, -1].mean() + 0.1  # its own answers, nearby
  with pytest.raises(ability.ColdStartError, match="'cluster' cannot take a new LLM"):
    add.add(runs["with_cluster"], "twin", str(answers), str(tmp_path / "plus3"))


@pytest.mark.slow  # shares the module's trained runs
def test_the_combination_learns_to_distrust_a_member_that_cannot_learn(runs, tmp_path):
  # irtnet + cluster: feedback says LLM 2 fails; the cluster member is left as it is (it
  # still believes its trained accuracy), so only the combination can discount it.
  run = predictors.load(runs["with_cluster"])
  data = resolve.load_for_run(run.config, runs["with_cluster"], require=())
  log = _feedback_log(str(tmp_path / "f.jsonl"), data, model=2)
  report = feedback.update(runs["with_cluster"], log, str(tmp_path / "out"),
                           heldout_fraction=0.25)
  assert "left as it is" in report["members"][1]
  new = predictors.load(str(tmp_path / "out")).predictor
  # The same updated members under the trained combination: what the refit adds.
  kept = new.with_params({**new.params, "weight": run.predictor.params["weight"],
                          "bias": run.predictor.params["bias"]})
  test = data.split("test")
  emb = data.embeddings[test.queries]
  assert new.logits(emb)[:, 2].mean() < kept.logits(emb)[:, 2].mean() - 0.1
  np.testing.assert_allclose(np.delete(new.logits(emb), 2, 1), np.delete(kept.logits(emb), 2, 1),
                             rtol=1e-6)
  w_old, w_new = run.predictor.params["weight"], new.params["weight"]
  assert w_new[1, 2] < w_old[1, 2]            # the stale cluster member counts less for LLM 2


def test_records_fall_in_folds_by_their_query_text():
  folds = [members._fold({"query": q}) for q in ("a", "b", "c", "d", "e", "f", "g", "h")]
  assert set(folds) == {0, 1}                 # both halves used on a handful of texts
  assert members._fold({"query": "a", "model": "x"}) == members._fold({"query": "a", "model": "y"})
