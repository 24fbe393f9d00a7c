"""Quiet by default: what a user-facing tool prints before and while it works.

A newcomer's first screen used to be noise: JAX probing for a TPU ("Unable to
initialize backend 'tpu'"), Orbax announcing that a checkpoint folder opened for
reading is read-only and logging every file it writes, transformers' "PyTorch was
not found" (irt_jax needs only its tokenizers), and absl's
`I1203 09:53:23.079691 1405... loop.py:424]` prefix on every line. None of it
means anything to the user, so every entry point calls `quiet_startup()` first in
its main(): progress lines are printed as bare messages, warnings as
`warning: ...`, and the noise above is dropped. Passing absl's `--verbosity`
(or `-v`) on the command line, at any value, leaves logging exactly as absl
sets it up, so everything comes back when something needs diagnosing.

This module is the one home of that policy (lowest layer: it imports only the
standard library and absl).
"""

from __future__ import annotations

import logging
import os
import sys

from absl import flags
from absl import logging as absl_logging

# (logger name or source path fragment, level below which to drop, message
# fragment or None for any message): what a quiet tool does not show.
_NOISE = (
    ("jax._src.xla_bridge", logging.WARNING, None),   # backend probing: "Unable to initialize backend 'tpu'"
    ("/orbax/", logging.WARNING, None),               # Orbax logs every file it writes at INFO
    ("/orbax/", logging.ERROR, "read only"),          # a checkpoint folder opened for reading
    ("/orbax/", logging.ERROR, "read_only"),
)


class QuietFilter(logging.Filter):
  """Drops the records that _NOISE names; keeps everything else."""

  def filter(self, record: logging.LogRecord) -> bool:
    for source, below, text in _NOISE:
      if record.levelno < below and (source in record.name or source in (record.pathname or "")):
        if text is None or text in record.getMessage():
          return False
    return True


class PlainFormatter(logging.Formatter):
  """Progress as bare lines; warnings and errors say what they are."""

  def format(self, record: logging.LogRecord) -> str:
    message = record.getMessage()
    if record.exc_info:
      message += "\n" + self.formatException(record.exc_info)
    if record.levelno >= logging.ERROR:
      return f"error: {message}"
    if record.levelno >= logging.WARNING:
      return f"warning: {message}"
    return message


def verbose_requested(flag_values: flags.FlagValues = flags.FLAGS) -> bool:
  """Whether the user passed absl's --verbosity (or -v) on the command line."""
  try:
    return flag_values["verbosity"].present > 0
  except (KeyError, flags.UnparsedFlagAccessError):
    return any(a.startswith(("--verbosity", "-v=", "--v=")) or a == "-v" for a in sys.argv[1:])


def quiet_startup(verbose: bool | None = None) -> bool:
  """Makes the tool's output quiet unless `verbose` (default: --verbosity given).

  Call it first in main(), after absl parsed the flags. Returns whether quiet
  mode was set up. Safe to call more than once (handlers get one filter each).
  """
  if verbose is None:
    verbose = verbose_requested()
  if verbose:
    return False
  os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")   # "PyTorch was not found"
  os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
  if "transformers" in sys.modules:
    sys.modules["transformers"].utils.logging.set_verbosity_error()
  handler = absl_logging.get_absl_handler()
  handler.setFormatter(PlainFormatter())
  if not any(isinstance(f, QuietFilter) for f in handler.filters):
    handler.addFilter(QuietFilter())
  logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)
  return True
