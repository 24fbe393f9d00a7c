"""RouterDC on frozen embeddings. From its released train_scripts/router_train.sh:
temperature 1, top_k 3 positives, last_k 3 negatives, cluster (sample-sample) loss
weight 1, lr 5e-5, batch 64 queries, 1000 steps; the sample-LLM loss is its
main term (weight 1). The head's widths are irt_jax's choice (RouterDC
fine-tunes mDeBERTa instead)."""

import ml_collections

from configs import common


def get_config() -> ml_collections.ConfigDict:
  config = common.get_config()
  config.model = ml_collections.ConfigDict(dict(
      name="routerdc", hidden_dim=768, embed_dim=768, temperature=1.0, top_k=3, last_k=3,
      sample_llm_weight=1.0, sample_sample_weight=1.0))
  config.optim = ml_collections.ConfigDict(dict(
      lr=5e-5, weight_decay=0.0, b1=0.9, b2=0.999, eps=1e-8,
      plateau_factor=1.0, plateau_patience=1000, plateau_threshold=1e-4))
  config.train.batch_cells = 512         # about RouterDC's 64 queries at 7-9 LLMs
  config.train.num_epochs = 20
  config.train.early_stop_patience = 5
  return config
