"""IrtNet without the mixture of experts (the ablation): the paper's training
settings and ability dimension, a_q and b_q linear in the embedding."""

import ml_collections

from configs import irtnet


def get_config() -> ml_collections.ConfigDict:
  config = irtnet.get_config()  # the paper's optimiser, schedule and batches
  config.model = ml_collections.ConfigDict(dict(
      name="irtnet_linear", ability_dim=232, input_noise=0.05, init="torch"))
  return config
