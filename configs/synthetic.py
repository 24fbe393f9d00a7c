"""The default job: synthetic data with known truth, about a minute on 2 CPU cores."""

from configs import irtnet


def get_config():
  config = irtnet.get_config()
  config.model.n_experts = 8
  config.model.top_k = 8
  config.model.hidden_dim = 128
  config.model.output_dim = 64
  config.model.ability_dim = 16
  config.model.dropout = 0.1
  config.optim.lr = 3e-3
  config.train.batching = "blocks"      # whole query rows: the fast layout
  config.train.num_epochs = 20
  config.train.log_every_steps = 20
  return config
