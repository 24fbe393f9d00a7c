r"""`irt-jax add-model`: adds a new LLM to a trained run from a few of its answers,
without retraining.

  irt-jax add-model --workdir=runs/zeroeval --name=NEW --responses=answers.csv \
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

from absl import flags

from irt_jax import logs
from irt_jax.cli import flags as cli_flags

FLAGS = flags.FLAGS


def define_flags() -> None:
  cli_flags.define_new_run_flags(
      "The trained run to add a model to.",
      "Sentence-encoder folder for queries the run has not seen (default: the run's "
      "recorded encoder folder).")
  flags.DEFINE_string("name", None, "The new LLM's name (must not be in the run).")
  flags.DEFINE_string("responses", None, "CSV prompt_id,label[,prompt] of the new LLM's answers.")
  flags.DEFINE_string("out", None, "Where the new run goes (default: WORKDIR+NAME).")
  flags.DEFINE_integer("propose", 0, "Print the K most informative queries to ask next.")


def main(argv):
  cli_flags.no_arguments(argv)
  cli_flags.require("workdir", "name")
  from irt_jax.coldstart.add import add

  logs.quiet_startup()
  with cli_flags.user_errors("add-model"):
    result = add(FLAGS.workdir, FLAGS.name, FLAGS.responses, FLAGS.out, FLAGS.propose,
                 FLAGS.encoder_dir, FLAGS.step)
  if "out" in result:
    print(f"added {result['name']} from {result['answers']} answers -> {result['out']}",
          file=sys.stderr)
