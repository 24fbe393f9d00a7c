"""config.auto: batch size and learning rate from the data's shape (training/sizing.py)."""

import math

import pytest

from configs import irtnet
from irt_jax.training import batches, sizing
from irt_jax.utils import ConfigError


def auto_config(**auto):
  config = irtnet.get_config()
  config.train.batching = "blocks"
  config.optim.lr = 1e-3
  config.auto = sizing.auto_config()
  config.auto.update(auto)
  return config


@pytest.mark.parametrize("n_models,n_queries,rows", [
    (9, 4793, 75),        # llmrouter: ceil(4793 / 64)
    (7, 16453, 258),      # routerdc
    (60, 500, 16),        # few queries: min_rows
    (112, 28538, 446),    # the paper's matrix
    (5, 10 ** 6, 1024),   # max_rows
])
def test_steps_per_epoch_set_the_rows_per_batch(n_models, n_queries, rows):
  out = sizing.resolve(auto_config(steps_per_epoch=64), n_models, n_queries)
  assert out.train.batch_cells == rows * n_models
  layout = batches.layout("blocks", out.train.batch_cells, n_models, 1)
  assert layout.rows == rows  # the blocks layout gets back exactly these rows
  assert out.optim.lr == 1e-3  # no scaling asked for
  assert out.auto.steps_per_epoch == 0 and str(n_queries) in out.auto.resolved_from


def test_sqrt_scaling_of_the_learning_rate_is_clipped():
  out = sizing.resolve(auto_config(lr_scaling="sqrt"), 9, 4793)  # 675 cells
  assert out.optim.lr == pytest.approx(1e-3 * math.sqrt(675 / 2048))
  big = sizing.resolve(auto_config(lr_scaling="sqrt"), 112, 28538)  # 49,952 cells: x4.9
  assert big.optim.lr == pytest.approx(4e-3)


def test_a_config_without_auto_and_a_resolved_one_are_unchanged():
  plain = irtnet.get_config()
  assert sizing.resolve(plain, 9, 4793) is plain
  once = sizing.resolve(auto_config(lr_scaling="sqrt"), 9, 4793)
  assert sizing.resolve(once, 9, 4793).to_dict() == once.to_dict()  # a resumed run agrees
  original = auto_config()
  sizing.resolve(original, 9, 4793)
  assert original.auto.steps_per_epoch == 64  # the caller's config is not modified


@pytest.mark.parametrize("change,field", [
    (dict(lr_scaling="cube"), "lr_scaling"), (dict(min_rows=0), "min_rows"),
    (dict(steps_per_epoch=-1), "steps_per_epoch"), (dict(reference_cells=0), "reference_cells"),
])
def test_bad_auto_settings_name_the_field(change, field):
  with pytest.raises(ConfigError, match=f"config.auto.{field}"):
    sizing.resolve(auto_config(**change), 9, 4793)


def test_auto_sizing_needs_query_blocks():
  config = auto_config()
  config.train.batching = "pairs"
  with pytest.raises(ConfigError, match="batching='blocks'"):
    sizing.resolve(config, 9, 4793)
