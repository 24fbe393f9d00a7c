"""One run-meta builder (checkpoint.run_meta): a trained, a fitted and an
added-model run carry the same meta keys, each filled by what wrote it."""

import importlib

import pytest

from configs import test as test_config
from irt_jax import checkpoint as ckpt_lib
from irt_jax.coldstart import add as add_model
from irt_jax import training

KEYS = set(ckpt_lib.run_meta(step=0, seed=0, history=[], best=None, stopped=False))


def _meta(workdir):
  return ckpt_lib.Checkpoints(str(workdir), read_only=True).restore_json()[1]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  root = tmp_path_factory.mktemp("meta")
  config = test_config.get_config()
  config.train.num_epochs = 1
  training.run(config, str(root / "trained"))
  knn = importlib.import_module("configs.knn").get_config()
  knn.data = test_config.get_config().data
  training.run(knn, str(root / "fitted"))
  data_dir = root / "trained" / "synthetic_data"
  ids = [line.split(",")[0] for line in open(data_dir / "question_order.csv")][1:41]
  responses = root / "answers.csv"
  responses.write_text("prompt_id,label\n" + "".join(f"{q},{i % 2}\n" for i, q in enumerate(ids)))
  add_model.add(str(root / "trained"), "newcomer", str(responses), out=str(root / "added"))
  return root, config


def test_trained_fitted_and_added_runs_carry_the_same_keys(runs):
  root, _ = runs
  trained, fitted, added = (_meta(root / w) for w in ("trained", "fitted", "added"))
  for meta in (trained, fitted, added):
    assert set(meta) == KEYS
  # Each filled by what wrote it: the controllers only where a resume needs them.
  assert trained["plateau"] and trained["early_stopping"] and trained["layout"]
  assert fitted["plateau"] is fitted["layout"] is None and fitted["stopped"]
  assert added["plateau"] is None and added["layout"] == trained["layout"]
  assert added["history"] == trained["history"] and added["seed"] == trained["seed"]
  assert [m["name"] for m in added["added_models"]] == ["newcomer"]
  assert trained["added_models"] == fitted["added_models"] == []
  assert added["ability_updates"] == trained["ability_updates"] == []


def test_a_run_with_added_models_is_not_trained_further(runs):
  root, config = runs
  with pytest.raises(training.TrainingError, match="added after training"):
    training.run(config, str(root / "added"))
