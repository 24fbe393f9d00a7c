"""Nearest-neighbour vote, tuned as a well-tuned kNN router is (arXiv 2505.12601):
k, the neighbour weighting (uniform or inverse cosine distance) and the
smoothing pseudo-count chosen together on val (lowest log loss)."""

import ml_collections

from configs import common


def get_config() -> ml_collections.ConfigDict:
  config = common.get_config()
  config.model = ml_collections.ConfigDict(dict(
      name="knn", k_grid=(5, 10, 20, 50, 100), weighting_grid=("uniform", "distance"),
      smoothing_grid=(0.5, 1.0, 2.0, 5.0)))
  return config
