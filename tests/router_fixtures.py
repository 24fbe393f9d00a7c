"""Trained runs shared by tests/test_router.py and tests/test_serve.py (as a plugin, so each
session-scoped run is trained once per test session, not once per module)."""

import os

import pytest

from configs import test as test_config
from irt_jax import training
from irt_jax.routing.router import Router
from tests.test_encoder import make_tiny_model
from tests.conftest import synthetic_spec


@pytest.fixture(scope="session")
def run(tmp_path_factory):
  """A tiny trained run (configs/test.py), shared with tests/test_serve.py."""
  config = test_config.get_config()
  config.train.num_epochs = 1
  workdir = str(tmp_path_factory.mktemp("router_run"))
  training.train_and_evaluate(config, workdir)
  return workdir


@pytest.fixture(scope="session")
def text_run(tmp_path_factory):
  """A run trained from prompts alone, with a tiny encoder recorded in its checkpoint."""
  from irt_jax.data import synthetic
  base = tmp_path_factory.mktemp("text_run")
  folder = synthetic.write(str(base / "data"), synthetic_spec(
      n_models=6, n_queries=100, embed_dim=16, n_benchmarks=2, true_dim=2, seed=5))
  os.remove(os.path.join(folder, "question_embeddings.npy"))
  encoder_dir = str(make_tiny_model(base / "tiny-encoder", "bert"))
  config = test_config.get_config()
  config.data.dir = folder
  config.encoder.model_dir = encoder_dir
  config.train.num_epochs = 1
  workdir = str(base / "run")
  training.train_and_evaluate(config, workdir)
  return workdir, encoder_dir


@pytest.fixture(scope="session")
def text_router(text_run):
  return Router.from_checkpoint(text_run[0])
