r"""`irt-jax update`: updates a run's abilities from the service's feedback log
(flags -> coldstart.feedback.update).

  irt-jax update --workdir=runs/llmrouter --feedback=feedback.jsonl \
      --out=runs/llmrouter+feedback [--heldout=feedback_later.jsonl | --heldout_fraction=0.2]

Refits, by MAP with the trained abilities as prior, the ability of every model
the log judges (coldstart/feedback.py); the query network and the other models
stay as they are. Writes the new run to --out (--workdir is only read), prints
a JSON report (per model: answers and how far its ability moved; on held-out
feedback: log loss, accuracy and routes before and after) and writes it to
OUT/feedback_update.json. Then reload the service: POST /admin/reload
{"workdir": OUT}. Kinds with abilities (irtnet, irtnet_linear, mf), and `ensemble`
runs (the recommended recipe), whose members that can learn are updated
(coldstart/members.py: abilities, logreg weights) and the others left as they are.
"""

import json
import os

from absl import flags

from irt_jax import logs
from irt_jax.cli import flags as cli_flags

FLAGS = flags.FLAGS


def define_flags() -> None:
  cli_flags.define_new_run_flags(
      "The trained run (only read).",
      "Encoder folder for queries that are not prompts of the run's data (default: the "
      "run's recorded one).")
  flags.DEFINE_string("feedback", None, "The feedback log (JSON lines: query, model, correct), "
                      "or the service's postgresql://... store.")
  flags.DEFINE_string("out", None, "Where the updated run goes (must not hold a run).")
  flags.DEFINE_string("heldout", None, "A second log to report on (default: a split of "
                      "--feedback).")
  flags.DEFINE_float("heldout_fraction", 0.2, "Share of the log's queries held out for the "
                     "report when --heldout is not given (0: fit on all).")
  flags.DEFINE_float("prior_scale", 1.0, "Multiplies the prior's precision: larger keeps the "
                     "abilities nearer the trained ones.")
  flags.DEFINE_bool("add_new_models", False, "Add models the run does not have (cold start "
                    "from their feedback) instead of refusing the log.")


def main(argv):
  cli_flags.no_arguments(argv)
  cli_flags.require("workdir", "feedback", "out")
  from irt_jax.coldstart import feedback
  from irt_jax.routing import router as router_lib
  from irt_jax.serving.store import read_feedback_from

  logs.quiet_startup()
  step = FLAGS.step
  embed = lambda texts: router_lib.Router.from_checkpoint(     # only for text the data lacks
      FLAGS.workdir, FLAGS.encoder_dir, step).embed(texts)
  with cli_flags.user_errors("update"):
    step = router_lib.parse_step(FLAGS.step)
    report = feedback.update(FLAGS.workdir, FLAGS.feedback, FLAGS.out,
                             heldout=FLAGS.heldout, heldout_fraction=FLAGS.heldout_fraction,
                             prior_scale=FLAGS.prior_scale, add_new=FLAGS.add_new_models,
                             step=step, embed=embed, read=read_feedback_from)
  text = json.dumps(report, indent=1)
  with open(os.path.join(FLAGS.out, "feedback_update.json"), "w", encoding="utf-8") as f:
    f.write(text + "\n")
  print(text)
