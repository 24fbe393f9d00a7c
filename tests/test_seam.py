"""The model-kind seam: the registry, config checking, batch layouts, the encoder record."""

import math

import numpy as np
import pytest

from irt_jax.training import batches
from irt_jax.data import io as data_lib
from irt_jax import models
from irt_jax import predictors
from irt_jax import training
from irt_jax.models import base


def test_unknown_kind_lists_the_valid_ones(config, tmp_path):
  config.model.name = "transformer"
  with pytest.raises(base.ConfigError, match=r"unknown model kind .*'transformer'.*irtnet"):
    training.train_and_evaluate(config, str(tmp_path / "never-created"))
  assert not (tmp_path / "never-created").exists()


def test_an_unknown_batch_layout_fails_before_the_workdir_or_data(config, tmp_path):
  # A ConfigError is what train.py turns into one line; a plain ValueError was a
  # traceback, raised only after the synthetic data had been generated.
  config.train.batching = "rows"
  with pytest.raises(base.ConfigError, match=r"config\.train\.batching='rows': expected one of "
                                             r"blocks, pairs"):
    training.train_and_evaluate(config, str(tmp_path / "never-created"))
  assert not (tmp_path / "never-created").exists()


def test_a_field_the_kind_does_not_take_is_named_with_the_valid_fields(config):
  config.model.k_neighbours = 5
  with pytest.raises(base.ConfigError,
                     match=r"config\.model\.k_neighbours is not a field of model kind "
                           r"'irtnet'; it takes: .*ability_dim"):
    models.for_config(config).spec(config.model, 3, 8)


def test_a_missing_field_is_named():
  with pytest.raises(base.ConfigError, match=r"needs config\.model\.dropout"):
    base.spec_from_config(models.get("irtnet").spec_cls,
                          {"name": "irtnet", "n_experts": 2, "n_shared": 1, "top_k": 2,
                           "hidden_dim": 4, "output_dim": 4, "ability_dim": 2,
                           "input_noise": 0.0, "init": "torch"}, 3, 8)


def _sparse_split():
  labels = np.array([[1, -1, 0], [-1, -1, 1], [0, 1, 1], [-1, 0, -1], [1, 1, 1]], np.int8)
  return data_lib.Split(queries=np.array([4, 0, 3, 1, 2], np.int32), labels=labels)


def test_pairs_layout_visits_every_observed_cell_once_per_epoch():
  split = _sparse_split()
  emb = np.arange(5 * 2, dtype=np.float32).reshape(5, 2)
  layout = batches.layout("pairs", batch_cells=4, n_models=3, n_devices=2)
  assert layout.rows == 4 and layout.n_batches(split) == math.ceil(split.n_cells / 4) == 3
  seen = []
  for block in layout.iterate(split, emb, seed=1, epoch=0):
    assert block["mask"].sum(axis=1).max() <= 1  # one cell per row, padding rows empty
    for r in np.flatnonzero(block["mask"].any(axis=1)):
      m = int(np.flatnonzero(block["mask"][r])[0])
      cell = int(block["query_index"][r])
      row, col = np.argwhere(split.mask)[cell]
      assert col == m and block["labels"][r, m] == split.labels[row, m]
      np.testing.assert_array_equal(block["embeddings"][r], emb[split.queries[row]])
      seen.append((int(row), m))
  assert sorted(seen) == sorted(map(tuple, np.argwhere(split.mask).tolist()))
  assert len(seen) == split.n_cells == 10
  # Another epoch, another order; the same cells.
  again = [tuple(b["query_index"]) for b in layout.iterate(split, emb, seed=1, epoch=1)]
  first = [tuple(b["query_index"]) for b in layout.iterate(split, emb, seed=1, epoch=0)]
  assert again != first


def test_blocks_layout_keeps_whole_rows():
  split = _sparse_split()
  emb = np.zeros((5, 2), np.float32)
  layout = batches.layout("blocks", batch_cells=6, n_models=3, n_devices=2)
  assert layout.rows == 2 and layout.n_batches(split) == 3
  cells = sum(int(b["mask"].sum()) for b in layout.iterate(split, emb, seed=0, epoch=0))
  assert cells == split.n_cells
  with pytest.raises(ValueError, match="batching='rows'"):
    batches.layout("rows", 6, 3, 2)


def test_pairs_training_runs_the_released_codes_sampling(config, tmp_path):
  config.train.batching = "pairs"
  config.train.num_epochs = 1
  summary = training.train_and_evaluate(config, str(tmp_path))
  train = summary["data"].split("train")
  assert summary["steps_per_epoch"] == math.ceil(train.n_cells / summary["rows_per_batch"])
  assert summary["rows_per_batch"] == config.train.batch_cells
  run = predictors.load(str(tmp_path), "latest")
  assert run.kind.name == "irtnet" and run.step == summary["steps_per_epoch"]
  # The encoder that made the embeddings is recorded for routing new text.
  assert run.encoder["name"] == config.encoder.name
  assert run.encoder["embeddings"].endswith("question_embeddings.npy")
