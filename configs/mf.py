"""EmbedLLM's matrix factorisation with its released settings (algorithm/mf.py and
its training script): text projection to d = 232, N(0, 0.05) noise on the frozen
query embedding in training, Adam lr 1e-4 with weight decay 1e-5 (torch
Adam(weight_decay), i.e. coupled L2), batches of 2048 random (model, query)
pairs, 50 epochs, no schedule. The released code keeps the last epoch; irt_jax
keeps the best by val accuracy, as for every kind."""

import ml_collections

from configs import common


def get_config() -> ml_collections.ConfigDict:
  config = common.get_config()
  config.model = ml_collections.ConfigDict(dict(name="mf", embed_dim=232, input_noise=0.05))
  config.optim = ml_collections.ConfigDict(dict(
      lr=1e-4, weight_decay=1e-5, b1=0.9, b2=0.999, eps=1e-8,
      plateau_factor=1.0, plateau_patience=1000, plateau_threshold=1e-4))  # no schedule
  config.train.batching = "pairs"       # EmbedLLM samples (model, query) pairs
  config.train.batch_cells = 2048
  config.train.num_epochs = 50
  config.train.early_stop_patience = 50  # none: all 50 epochs run
  return config
