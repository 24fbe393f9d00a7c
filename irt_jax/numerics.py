"""Numerics shared by every layer: P(correct) from logits in float64.

One home for the sigmoid, so that evaluation, routing, cold start and the service
all turn logits into probabilities the same way (float32 saturates near logit 17,
where cost-aware choices would then see ties).
"""

from __future__ import annotations

import numpy as np
from scipy import special

def sigmoid(logits: np.ndarray) -> np.ndarray:
  """P(correct) from logits, in float64 (float32 saturates to 1.0 near logit 17)."""
  return special.expit(np.asarray(logits, np.float64))
