"""One L2 logistic regression per LLM: C chosen on val (lowest log loss)."""

import ml_collections

from configs import common


def get_config() -> ml_collections.ConfigDict:
  config = common.get_config()
  config.model = ml_collections.ConfigDict(dict(
      name="logreg", c_grid=(0.1, 0.3, 1.0, 3.0, 10.0), max_iter=2000))
  return config
