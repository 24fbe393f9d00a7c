"""The paper's settings (IrtNet's released code). Point it at data with
--config.data.dir=../shared/data/routerdc (or the downloaded IrtNet dataset).

Batches are the released code's random (model, query) pairs. Whole query rows
(--config.train.batching=blocks) give the same routing in a third to a tenth of
the time on the shared data and about 40x faster epochs at the paper's 112 LLMs
on a CPU, with slightly lower AUC where pairs train long (README: "Query blocks
or the paper's pairs")."""

import ml_collections

from configs import common


def get_config() -> ml_collections.ConfigDict:
  config = common.get_config()

  config.model = ml_collections.ConfigDict()
  config.model.name = "irtnet"
  config.model.n_experts = 39           # routed experts
  config.model.top_k = 39               # all active (dense softmax gate)
  config.model.n_shared = 1
  config.model.hidden_dim = 512
  config.model.output_dim = 256
  config.model.ability_dim = 232
  config.model.dropout = 0.5
  config.model.input_noise = 0.05
  config.model.init = "torch"           # 'torch' (the paper's) or 'lecun'

  config.optim = ml_collections.ConfigDict()
  config.optim.lr = 1e-4
  config.optim.weight_decay = 1e-4      # coupled L2, as torch.optim.Adam(weight_decay=...)
  config.optim.b1 = 0.9
  config.optim.b2 = 0.999
  config.optim.eps = 1e-8
  config.optim.plateau_factor = 0.1     # ReduceLROnPlateau on val loss
  config.optim.plateau_patience = 2
  config.optim.plateau_threshold = 1e-4  # relative, as torch's default

  config.train.batching = "pairs"       # 2048 random (model, query) pairs, as the released code
  config.train.batch_cells = 2048       # (model, query) cells per global batch
  config.train.num_epochs = 30
  config.train.early_stop_patience = 5  # epochs without val-accuracy gain
  return config
