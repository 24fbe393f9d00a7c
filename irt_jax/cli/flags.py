"""Flag definitions the tools share, and the one way a tool ends on a user's mistake.

Each tool module defines its flags in `define_flags()`, called by the dispatcher
(irt_jax/cli/__init__.py) just before absl parses the command line, so importing
two tool modules in one process defines no flag twice.
"""

from __future__ import annotations

import contextlib
import sys

from absl import flags

from irt_jax.errors import UserError


def define_workdir(help_text: str = "The trained run's workdir.",
                   default: str | None = None) -> None:
  flags.DEFINE_string("workdir", default, help_text)


def define_step(of: str = "") -> None:
  """--step: which checkpoint of the run is read."""
  flags.DEFINE_string("step", "best", f"Checkpoint{of}: 'best' (by val accuracy), 'latest' or a "
                      "step number.")


def define_encoder_dir(help_text: str = "Query encoder folder (default: the one the run "
                       "recorded).") -> None:
  flags.DEFINE_string("encoder_dir", None, help_text)


def define_encoder_precision(extra: str = "") -> None:
  flags.DEFINE_string("encoder_precision", "float32",
                      "The encoder's matmul precision, float32 or bfloat16 (faster; its accuracy "
                      f"check against float32 is in docs/encoder.md){extra}. Checked by "
                      "routing.router.load.")


def define_costs(extra: str = "") -> None:
  flags.DEFINE_string("costs", None, "Costs: a JSON file model name -> cost per query, or a "
                      "model_prices.csv (USD per million tokens; each query priced by its "
                      f"tokens).{extra}")


def define_router_flags(precision_extra: str = "", costs_extra: str = "") -> None:
  """The flags of a tool that loads a Router from a trained run (route, serve)."""
  define_workdir()
  define_encoder_dir()
  define_encoder_precision(precision_extra)
  define_step()
  define_costs(costs_extra)


def define_new_run_flags(workdir_help: str, encoder_help: str) -> None:
  """The flags of a tool that writes a new run from a trained one (add-model, update)."""
  define_workdir(workdir_help)
  flags.DEFINE_string("encoder_dir", None, encoder_help)
  define_step(" of --workdir")


def require(*names: str) -> None:
  """A usage error naming the first of these flags left unset."""
  from absl import app
  for name in names:
    if not getattr(flags.FLAGS, name):
      raise app.UsageError(f"--{name} is required")


def no_arguments(argv: list[str]) -> None:
  from absl import app
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")


@contextlib.contextmanager
def user_errors(tool: str, also: tuple[type[BaseException], ...] = ()):
  """A user's mistake inside ends the tool with `tool: message` on stderr and exit 1.

  UserError is the library's one class for them; a plain ValueError is caught too,
  for the checks of numbers and shapes that raise it directly; `also` adds more
  (OSError where the tool opens files the flags name).
  """
  try:
    yield
  except (UserError, ValueError, *also) as e:
    print(f"{tool}: {e}", file=sys.stderr)
    sys.exit(1)
