"""transformers, imported without its "PyTorch was not found" notice.

irt_jax uses transformers only for tokenizers and configs (the networks are JAX), so
the notice transformers prints on import when torch is absent says nothing to a
user of irt_jax; it is silenced for that one import, and the user's own settings
(TRANSFORMERS_NO_ADVISORY_WARNINGS, the transformers logger) are left as they were.
"""

from __future__ import annotations

import os
import sys

_NO_ADVICE = "TRANSFORMERS_NO_ADVISORY_WARNINGS"


def transformers():
  """The transformers module; its first import here prints no torch notice."""
  if "transformers" in sys.modules:
    return sys.modules["transformers"]
  before = os.environ.get(_NO_ADVICE)
  os.environ[_NO_ADVICE] = "1"
  try:
    import transformers as module
  finally:
    if before is None:
      os.environ.pop(_NO_ADVICE, None)
    else:
      os.environ[_NO_ADVICE] = before
  return module
