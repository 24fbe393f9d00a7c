"""Reading a run leaves it as it was: a trained run can be evaluated into
another folder, extended with a new LLM and routed with, and its folder is
unchanged (no data cache, no generated data, no encoded prompts written there).
Parsed-data copies go with the run being written, or to $IRT_JAX_CACHE_DIR."""

import os

import numpy as np
import pytest

from configs import test as test_config
from irt_jax.coldstart import add as add_model
from irt_jax import evaluation
from irt_jax import predictors
from irt_jax.data import io as data_lib
from irt_jax.data import resolve
from irt_jax.data import synthetic
from irt_jax.routing.router import Router
from irt_jax import training
from tests.conftest import synthetic_spec
from tests.test_encoder import make_tiny_model


def listing(root) -> dict:
  """Every path under `root` with its size and mtime (directories included)."""
  out = {}
  for dirpath, dirnames, filenames in os.walk(root):
    for name in dirnames + filenames:
      path = os.path.join(dirpath, name)
      st = os.lstat(path)
      out[os.path.relpath(path, root)] = (st.st_size if name in filenames else None,
                                          st.st_mtime_ns)
  return out


def set_writable(root, writable: bool) -> None:
  for dirpath, _, filenames in os.walk(root):
    for path in [dirpath] + [os.path.join(dirpath, f) for f in filenames]:
      mode = os.stat(path).st_mode
      os.chmod(path, mode | 0o200 if writable else mode & ~0o222)


@pytest.fixture
def text_run(tmp_path):
  """A run trained from prompts alone (a tiny encoder records itself in it)."""
  folder = synthetic.write(str(tmp_path / "data"), synthetic_spec(
      n_models=6, n_queries=120, embed_dim=16, n_benchmarks=2, true_dim=2, seed=7))
  os.remove(os.path.join(folder, "question_embeddings.npy"))
  config = test_config.get_config()
  config.data.dir = folder
  config.encoder.model_dir = str(make_tiny_model(tmp_path / "tiny-encoder", "bert"))
  config.train.num_epochs = 1
  workdir = str(tmp_path / "run")
  training.run(config, workdir)
  return workdir, folder


def _answers(path, data_folder, n=30):
  ids = [line.split(",")[0] for line in open(os.path.join(data_folder, "question_order.csv"))]
  rows = [f"{q},{i % 2}," for i, q in enumerate(ids[1:n + 1])]
  rows.append('never-seen-1,1,"What is the capital of France, in one word?"')
  path.write_text("prompt_id,label,prompt\n" + "\n".join(rows) + "\n")
  return str(path)


def test_reading_evaluating_extending_and_routing_a_run_leave_it_unchanged(text_run, tmp_path,
                                                                           monkeypatch):
  monkeypatch.delenv(resolve.CACHE_DIR_ENV, raising=False)
  workdir, folder = text_run
  before = listing(workdir)
  read_only = os.geteuid() != 0  # root writes through permissions: the listing still checks
  if read_only:
    set_writable(workdir, False)
  try:
    report = evaluation.run(workdir, "test", output_dir=str(tmp_path / "eval"))
    assert 0 < report["correctness"]["accuracy"] <= 1
    new = str(tmp_path / "extended")
    added = add_model.add(workdir, "newcomer", _answers(tmp_path / "a.csv", folder), out=new)
    assert added["out"] == new
    router = Router.from_checkpoint(new)
    routes = router.route(["Name a prime number.", "Translate 'cat' to French."])
    assert router.model_names[-1] == "newcomer" and len(routes) == 2
    old = predictors.load(workdir)
    np.testing.assert_allclose(router.logits(["Name a prime number."])[:, :-1],
                               Router.from_checkpoint(workdir).logits(["Name a prime number."]),
                               atol=1e-5)
    assert len(old.model_names) == 6
  finally:
    if read_only:
      set_writable(workdir, True)
  assert listing(workdir) == before
  assert sorted(os.listdir(new)) == ["checkpoints"]  # the new run holds only itself


def test_the_cache_folder_the_user_sets_takes_every_copy(tmp_path, monkeypatch):
  cache = tmp_path / "cache"
  monkeypatch.setenv(resolve.CACHE_DIR_ENV, str(cache))
  config = test_config.get_config()
  config.train.num_epochs = 1
  workdir = tmp_path / "run"
  training.run(config, str(workdir))
  assert not (workdir / "data_cache").exists() and len(os.listdir(cache)) == 1
  before = listing(workdir)
  # A reader's copy (another request: the test split) goes there too.
  evaluation.run(str(workdir), "test", output_dir=str(tmp_path / "eval"))
  assert len(os.listdir(cache)) == 2 and listing(workdir) == before
  # The copies are found again: a second read writes nothing new.
  evaluation.run(str(workdir), "test", output_dir=str(tmp_path / "eval2"))
  assert len(os.listdir(cache)) == 2


def test_a_run_whose_data_is_gone_is_named_not_regenerated(tmp_path):
  config = test_config.get_config()
  config.train.num_epochs = 1
  workdir = tmp_path / "run"
  training.run(config, str(workdir))
  os.rename(workdir / "synthetic_data", tmp_path / "moved")
  with pytest.raises(data_lib.DataError, match="synthetic_data: the data of the run"):
    evaluation.run(str(workdir), "test", output_dir=str(tmp_path / "eval"))
  assert not (workdir / "synthetic_data").exists()
