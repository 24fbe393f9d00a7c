"""The recipe to start from: chosen on the validation splits of all
three shared datasets (docs/recipe.md), never on test.

  python train.py --config=configs/recommended.py --workdir=runs/rec \
      --config.data.dir=../shared/data/llmrouter

An ensemble of three runs trained one after the other into WORKDIR/members/:
a small IrtNet on query blocks, sized for the data it is given (`config.auto`:
about 64 steps per epoch whatever the matrix, so 7 LLMs x 20k queries and
112 x 35k take the same number of updates per epoch; training/sizing.py),
the per-LLM logistic regression (configs/logreg.py, C chosen on val) and the
tuned nearest-neighbour vote (configs/knn.py, k, weighting and smoothing
chosen on val). Their
logits are combined by the rule validation prefers (models/ensemble.py:
a mean, one weight per member, or weights per LLM, scored cross-fitted on val).
configs/irtnet.py stays the paper's settings.
"""

import ml_collections

from configs import ensemble
from configs import irtnet
from configs import knn
from configs import logreg
from irt_jax.training import sizing


def irtnet_member() -> ml_collections.ConfigDict:
  """The IrtNet member: the search's chosen size (`s8_auto64`: 8 experts of 256
  hidden units, output 128, ability 32, dropout 0.2), Adam lr 1e-3, at most 30
  epochs, early stop after 5."""
  config = irtnet.get_config()
  config.model.update(n_experts=8, top_k=8, hidden_dim=256, output_dim=128, ability_dim=32,
                      dropout=0.2)
  config.optim.lr = 1e-3
  config.train.batching = "blocks"
  config.train.num_epochs = 30
  config.train.early_stop_patience = 5
  config.auto = sizing.auto_config(steps_per_epoch=64)
  return config


def get_config() -> ml_collections.ConfigDict:
  config = ensemble.get_config()
  config.model.combine = "auto"
  config.members = ml_collections.ConfigDict({"irtnet": irtnet_member(),
                                              "logreg": logreg.get_config(),
                                              "knn": knn.get_config()})
  return config
