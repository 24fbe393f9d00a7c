"""Nearest-neighbour vote: k chosen on val (lowest log loss) from a small grid."""

import ml_collections

from configs import common


def get_config() -> ml_collections.ConfigDict:
  config = common.get_config()
  config.model = ml_collections.ConfigDict(dict(name="knn", k_grid=(5, 10, 20, 50, 100)))
  return config
