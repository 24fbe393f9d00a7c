"""Leave-one-benchmark-out benchmark prediction on 2 CPU cores: IrtNet with the
synthetic config's small sizes (8 experts, hidden 128, output 64, ability 16) and
its higher learning rate (3e-3), at most 12 epochs. The paper's sizes take about
8 minutes per training on llmrouter; this needs one training per benchmark."""

from configs import synthetic


def get_config():
  config = synthetic.get_config()
  config.train.num_epochs = 12
  config.train.early_stop_patience = 3
  config.train.log_every_steps = 50
  return config
