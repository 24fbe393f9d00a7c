"""An ensemble of finished runs on the same data (kind `ensemble`):

  python train.py --config=configs/ensemble.py --workdir=runs/ens \
      --config.data.dir=../shared/data/llmrouter \
      --config.model.members=runs/irtnet,runs/logreg

The members' logits are combined by the rule validation prefers (`combine='auto'`:
a plain mean, one weight per member, or weights per LLM; models/ensemble.py).
Members are copied into the checkpoint, so the ensemble predicts on its own.
"""

import ml_collections

from configs import common


def get_config() -> ml_collections.ConfigDict:
  config = common.get_config()
  config.model = ml_collections.ConfigDict(dict(
      name="ensemble",
      members="",          # comma-separated workdirs of finished runs on this data
      combine="auto",      # auto | mean | global | per_llm
      member_models=()))   # filled in when fitted: each member's config.model (JSON)
  return config
