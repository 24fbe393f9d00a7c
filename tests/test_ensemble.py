"""The `ensemble` kind: built from finished runs, saved and loaded like any run,
evaluated, compared and routed from; bad members end in one clear error."""

import subprocess
import sys

import numpy as np
import pytest

from configs import ensemble as ensemble_config
from irt_jax import evaluation, predictors
from irt_jax.models import ensemble
from irt_jax.routing.router import Router
from irt_jax import training
from irt_jax.utils import ConfigError
from tests.conftest import REPO
from tests.fake_encoder import HashEncoder
from tests.test_kinds import tiny_config


@pytest.fixture(scope="module")
def members(tmp_path_factory):
  root = tmp_path_factory.mktemp("members")
  out = {}
  for kind in ("irtnet", "logreg"):
    out[kind] = str(root / kind)
    training.run(tiny_config(kind), out[kind])
  return out


def ensemble_run(members, workdir, combine):
  config = ensemble_config.get_config()
  config.data = tiny_config("logreg").data
  config.model.members = f"{members['irtnet']},{members['logreg']}"
  config.model.combine = combine
  summary = training.run(config, str(workdir))
  return predictors.load(str(workdir)), summary


def test_mean_ensemble_is_the_mean_of_its_members_logits(members, tmp_path):
  run, summary = ensemble_run(members, tmp_path / "mean", "mean")
  data = summary["data"]
  emb = data.embeddings[data.split("test").queries]
  parts = [predictors.load(members[k]).predictor.logits(emb) for k in ("irtnet", "logreg")]
  np.testing.assert_allclose(run.predictor.logits(emb), (parts[0] + parts[1]) / 2, atol=1e-5)
  assert run.kind.name == "ensemble" and len(run.config.model.member_models) == 2


def test_auto_ensemble_is_evaluated_compared_and_routed_like_any_run(members, tmp_path):
  run, summary = ensemble_run(members, tmp_path / "auto", "auto")
  rule = ensemble.FITTED[int(run.predictor.params["rule"])]
  assert rule in ensemble.FITTED
  report = evaluation.run(str(tmp_path / "auto"), "test")
  assert report["kind"] == "ensemble" and 0.5 < report["correctness"]["auc"] <= 1.0
  # val chose the rule by cross-fitted log loss: it is no worse there than the mean
  result = evaluation.compare([members["logreg"], str(tmp_path / "auto")], "val")
  assert result["paired"]["auto"]["log_loss"]["diff"] < 0.02
  predictor = run.predictor
  encoder = HashEncoder(predictor.input_dim)
  texts = ["What is 17 * 23?", "Name the capital of Australia.", "Write a haiku."]
  routes = Router.from_predictor(predictor, encoder).route(texts)
  expected = np.argmax(predictor.logits(encoder.encode(texts)), axis=1)
  assert [r.model for r in routes] == [predictor.model_names[j] for j in expected]


def test_fitted_weights_favour_the_informative_member():
  rng = np.random.default_rng(0)
  truth = rng.normal(size=(3000, 3)) * 2
  labels = (rng.random(truth.shape) < 1 / (1 + np.exp(-truth))).astype(np.int8)
  labels[rng.random(truth.shape) < 0.2] = -1
  z = np.stack([truth, rng.normal(size=truth.shape)])  # the truth, then noise
  for rule in ("global", "per_llm"):
    weight, bias = ensemble.fit_combination(rule, z, labels)
    assert weight.shape == (2, 3) and bias.shape == (3,)
    assert (weight[0] > 0.6).all() and (np.abs(weight[1]) < 0.15).all(), (rule, weight)
  mean_w, mean_b = ensemble.fit_combination("mean", z, labels)
  assert (mean_w == 0.5).all() and (mean_b == 0).all()
  np.testing.assert_allclose(ensemble.cross_fitted_logits("mean", z, labels), z.mean(0))
  scores = ensemble.choose_combination(z, labels)
  assert scores["global"] < scores["mean"]  # averaging in pure noise costs log loss


def test_missing_or_foreign_members_are_clear_errors(members, tmp_path):
  config = ensemble_config.get_config()
  config.data = tiny_config("logreg").data
  config.model.members = f"{members['logreg']},{tmp_path / 'nowhere'}"
  with pytest.raises(ConfigError, match="nowhere: not a finished run"):
    training.run(config, str(tmp_path / "e1"))
  other = tiny_config("logreg")
  other.data.synthetic.n_models = 5
  training.run(other, str(tmp_path / "other"))
  config.model.members = f"{members['logreg']},{tmp_path / 'other'}"
  with pytest.raises(ConfigError, match="other was trained on other LLMs"):
    training.run(config, str(tmp_path / "e2"))
  config.model.members = " , "
  with pytest.raises(ConfigError, match="members is empty"):
    training.run(config, str(tmp_path / "e3"))
  out = subprocess.run([sys.executable, "train.py", "--config=configs/ensemble.py",
                        f"--workdir={tmp_path / 'e4'}", f"--config.model.members={tmp_path / 'x'}",
                        "--config.data.synthetic.n_models=12"],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
  assert out.returncode != 0 and "Traceback" not in out.stderr, out.stderr[-2000:]
  assert "not a finished run" in out.stderr.strip().splitlines()[-1]
