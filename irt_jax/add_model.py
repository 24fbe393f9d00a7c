r"""Adds a new LLM to a trained run from a few of its answers, without retraining.

  python -m irt_jax.add_model --workdir=runs/zeroeval --name=NEW --responses=answers.csv \
      [--out=runs/zeroeval+NEW] [--propose=K] [--encoder_dir=DIR]

answers.csv: `prompt_id,label` (label 0/1), plus a `prompt` column for queries
the run has not seen (they are embedded with the run's recorded encoder, or
--encoder_dir). The new LLM's ability is fitted by MAP (irt_jax.coldstart.ability);
the query network and the other abilities stay as they are. A NEW checkpoint
directory is written (the old run is untouched) that `predictors.load`, eval
and the Router read like any run, routing among the old LLMs plus the new one.

--propose=K prints, as CSV on stdout, the K queries whose answers would tell
most about the new LLM (D-optimal Fisher information at the current estimate,
after the answers in --responses if given): run the LLM on them, append its
answers to the file and call again (propose -> answer -> update).

Kinds with abilities (an IrtView: irtnet, irtnet_linear, mf) support this, and
`ensemble` runs (the recommended recipe) whose members all can (IrtNet-family
and logreg members; coldstart/members.py); --propose needs a run with abilities.
This module wires the flags; the work is irt_jax.coldstart.add.
"""

from __future__ import annotations

import sys

from absl import app
from absl import flags

from irt_jax import checkpoint as ckpt_lib
from irt_jax import logs
from irt_jax.coldstart.add import add

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command line's flags, defined only when this module runs as the entry
  point (importing it beside other entry modules defines none twice)."""
  flags.DEFINE_string("workdir", None, "The trained run to add a model to.")
  flags.DEFINE_string("name", None, "The new LLM's name (must not be in the run).")
  flags.DEFINE_string("responses", None, "CSV prompt_id,label[,prompt] of the new LLM's answers.")
  flags.DEFINE_string("out", None, "Where the new run goes (default: WORKDIR+NAME).")
  flags.DEFINE_integer("propose", 0, "Print the K most informative queries to ask next.")
  flags.DEFINE_string("encoder_dir", None, "Sentence-encoder folder for queries the run has not "
                      "seen (default: the run's recorded encoder folder).")
  flags.DEFINE_string("step", "best", "Checkpoint of --workdir: 'best', 'latest' or a number.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  for flag in ("workdir", "name"):
    if not getattr(FLAGS, flag):
      raise app.UsageError(f"--{flag} is required")
  logs.quiet_startup()
  try:
    result = add(FLAGS.workdir, FLAGS.name, FLAGS.responses, FLAGS.out, FLAGS.propose,
                 FLAGS.encoder_dir, FLAGS.step)
  except (ckpt_lib.CheckpointError, ValueError) as e:  # DataError, ColdStartError, EncoderError
    sys.exit(f"add_model: {e}")
  if "out" in result:
    print(f"added {result['name']} from {result['answers']} answers -> {result['out']}",
          file=sys.stderr)


if __name__ == "__main__":
  define_flags()
  app.run(main)
