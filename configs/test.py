"""Tiny settings for tests: seconds on CPU."""

from configs import synthetic


def get_config():
  config = synthetic.get_config()
  config.data.synthetic.update(n_models=12, n_queries=600, embed_dim=32, n_benchmarks=3,
                               true_dim=3)
  config.model.update(n_experts=3, top_k=3, hidden_dim=32, output_dim=16, ability_dim=4,
                      dropout=0.0, input_noise=0.0)
  config.optim.lr = 1e-2
  config.train.batch_cells = 256
  config.train.num_epochs = 4
  config.train.log_every_steps = 10
  return config
