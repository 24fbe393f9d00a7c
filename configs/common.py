"""Settings every model kind shares: data, query encoder, run bookkeeping.

Kind files (configs/irtnet.py, configs/mf.py, ...) start from `get_config()`
here and add `model`, `optim` and the training schedule of their own.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0

  config.data = ml_collections.ConfigDict()
  config.data.dir = ""                  # '' = synthetic data generated in the workdir
  config.data.benchmarks = ""           # '' = category; 'irtnet' = the paper's 10; or 'a,b,c'
  config.data.embeddings_file = "question_embeddings.npy"
  config.data.synthetic = ml_collections.ConfigDict(dict(
      n_models=24, n_families=4, n_queries=3000, n_benchmarks=5, embed_dim=768,
      true_dim=6, missing_frac=0.0, seed=0))

  config.encoder = ml_collections.ConfigDict()
  # The encoder that made the query embeddings: recorded in every checkpoint so
  # the Router encodes new text the same way. Shipped embeddings are all-mpnet-base-v2.
  config.encoder.name = "all-mpnet-base-v2"
  config.encoder.model_dir = ""         # sentence-encoder folder, used when embeddings are missing
  config.encoder.batch_size = 64
  config.encoder.max_length = 0         # 0 = the encoder's own (384 for all-mpnet-base-v2)

  config.train = ml_collections.ConfigDict()
  config.train.batching = "blocks"      # 'blocks' (whole query rows) or 'pairs' (the paper's)
  config.train.log_every_steps = 100
  config.train.eval_rows = 4096         # query rows per evaluation block

  config.checkpoint = ml_collections.ConfigDict()
  config.checkpoint.every_steps = 0     # 0 = at the end of each epoch only
  return config
