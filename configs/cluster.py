"""Cluster router (Avengers-Pro style): k-means on the query embeddings, each
model's smoothed accuracy per cluster; the number of clusters chosen on val.

Published settings, from LLMRouterBench's Avengers-Pro configurations
(github.com/ynulihao/LLMRouterBench, baselines/AvengersPro/config/): 16 clusters
with the nearest one only (simple_config.json) and 25 clusters with the 3 nearest
(balance_config.json), both with beta = 9 for the softmax over the near clusters
and scikit-learn's KMeans with n_init = 10. Here the grid holds both cluster
counts and the smaller and larger ones around them, and `top_k` is the balance
configuration's 3 (top_k = 1 routes by the nearest cluster alone).
`smoothing` is this project's: one pseudo-answer at the model's train accuracy
per (cluster, model), so an empty cell falls back to the prior.
"""

import ml_collections

from configs import common


def get_config() -> ml_collections.ConfigDict:
  config = common.get_config()
  config.model = ml_collections.ConfigDict(dict(
      name="cluster", k_grid=(8, 16, 25, 32, 64), top_k=3, beta=9.0, smoothing=1.0, n_init=10))
  return config
