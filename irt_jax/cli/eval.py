r"""`irt-jax eval` (and `python eval.py`): evaluates trained runs of any model kind
(flags -> evaluation.run / compare).

  irt-jax eval --workdir=runs/routerdc [--split=test] [--output_dir=DIR]
  irt-jax eval --workdir=runs/irtnet --compare=runs/logreg,runs/knn   # one table
  irt-jax eval --workdir=runs/zeroeval+NEW --data_dir=DIR   # another folder, LLMs by name
With --compare, each run's difference from the first (--workdir) in AUC, log
loss and routing micro / macro comes with a 95% paired bootstrap interval over
the split's queries (irt_jax/evaluation/paired.py).
The checkpoint carries its kind, config and encoder, so no training flag is repeated.
"""

import os

from absl import flags

from irt_jax import logs
from irt_jax.cli import flags as cli_flags
from irt_jax import evaluation
from irt_jax.evaluation import report as report_lib

FLAGS = flags.FLAGS


def define_flags() -> None:
  cli_flags.define_workdir("The training run's workdir.", default="runs/synthetic")
  flags.DEFINE_list("compare", [], "More workdirs to evaluate beside --workdir, as one table.")
  flags.DEFINE_string("split", "test", "Split to evaluate: train, val or test.")
  flags.DEFINE_string("output_dir", None, "Where report.json goes (default WORKDIR/eval).")
  cli_flags.define_step()
  flags.DEFINE_list("evaluators", [], "Evaluators to run (default: correctness, routing, "
                    "interpretability, calibration and, on synthetic data, synthetic_truth; "
                    "benchmark_prediction where WORKDIR/benchmark_prediction.json exists).")
  flags.DEFINE_bool("calibration_temperature", False, "Also fit a temperature on val and "
                    "report calibration after it.")
  flags.DEFINE_string("benchmark_prediction", None, "A benchmark_prediction.json (or its "
                      "folder) to include in the report.")
  flags.DEFINE_bool("balance_frontier", False, "Also sweep the cost rule 'balance' "
                    "(Avengers-Pro's alpha over [0, 1]) in the cost frontier, beside cost_weight.")
  flags.DEFINE_string("data_dir", None, "Evaluate on this data folder instead of the run's own "
                      "(same layout; LLMs matched by name, the folder's extra LLMs left out).")


def main(argv):
  cli_flags.no_arguments(argv)
  logs.quiet_startup()
  with cli_flags.user_errors("eval"):
    if FLAGS.compare:
      result = evaluation.compare([FLAGS.workdir] + FLAGS.compare, FLAGS.split, FLAGS.step)
      out = FLAGS.output_dir or os.path.join(FLAGS.workdir, "eval")
      evaluation.write_compare(result, out)
      print(report_lib.format_compare(result["table"], result["dataset"], result["split"]))
      print("\n".join(report_lib.paired_lines(result)))
      return
    options = {"temperature": FLAGS.calibration_temperature,
               "balance_frontier": FLAGS.balance_frontier}
    if FLAGS.benchmark_prediction:
      options["benchmark_prediction"] = FLAGS.benchmark_prediction
    report = evaluation.run(FLAGS.workdir, FLAGS.split, FLAGS.output_dir, FLAGS.step,
                            FLAGS.evaluators or None, options, data_dir=FLAGS.data_dir)
  print(report_lib.format_report(report))
  if "data_subset" in report:
    print(f"note: {report['data_subset']['note']}: "
          f"{', '.join(report['data_subset']['models_left_out'])}")
