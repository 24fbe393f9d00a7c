"""Text -> embeddings -> training -> routing, from a folder that has only prompts."""

import os
import shutil

import numpy as np
import pytest

from irt_jax.data import io as data_lib
from irt_jax.data import resolve
from irt_jax import evaluation
from irt_jax import training
from irt_jax.encoder import load_encoder
from tests.test_encoder import make_tiny_model


@pytest.fixture
def text_only(synthetic_dir, tmp_path):
  folder = tmp_path / "text_only"
  shutil.copytree(synthetic_dir, folder)
  os.remove(folder / "question_embeddings.npy")
  return str(folder), str(make_tiny_model(tmp_path / "tiny-encoder", "mpnet"))


def test_missing_embeddings_without_an_encoder_is_a_clear_error(config, text_only, tmp_path):
  folder, _ = text_only
  config.data.dir = folder
  with pytest.raises(data_lib.DataError, match=r"question_embeddings\.npy: file not found .* "
                                               r"`python -m irt_jax encode"):
    resolve.prepare_and_load(config, str(tmp_path / "w"))


@pytest.mark.slow
def test_training_from_text_alone_encodes_once_and_routes(config, text_only, tmp_path):
  folder, encoder_dir = text_only
  config.data.dir = folder
  config.encoder.model_dir = encoder_dir
  config.train.num_epochs = 1
  workdir = str(tmp_path / "run")
  summary = training.train_and_evaluate(config, workdir)
  cached = os.path.join(folder, "question_embeddings.npy")
  assert os.path.exists(cached)
  prompts = data_lib.read_question_order(os.path.join(folder, "question_order.csv"))[1]
  np.testing.assert_allclose(summary["data"].embeddings,
                             load_encoder(encoder_dir).encode(prompts), atol=1e-6)
  stamp = os.path.getmtime(cached)
  report = evaluation.run(workdir, "test")  # reuses the cached embeddings
  assert os.path.getmtime(cached) == stamp
  assert report["n_queries"] == len(summary["data"].split("test").queries)
  assert 0.0 <= report["routing"]["micro"] <= report["routing"]["baselines"]["oracle"]["micro"]


def test_read_only_text_folder_caches_in_the_workdir(config, text_only, tmp_path, monkeypatch):
  folder, encoder_dir = text_only
  config.data.dir = folder
  config.encoder.model_dir = encoder_dir
  workdir = str(tmp_path / "run")
  os.makedirs(workdir)
  real_access = os.access
  monkeypatch.setattr(resolve.os, "access",  # as for a user who may not write there
                      lambda path, mode: False if path == folder else real_access(path, mode))
  data = resolve.prepare_and_load(config, workdir)
  assert os.path.exists(os.path.join(workdir, "question_embeddings.npy"))
  assert not os.path.exists(os.path.join(folder, "question_embeddings.npy"))
  assert data.embeddings.shape[0] == data.n_queries
