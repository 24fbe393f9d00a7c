r"""Evaluates trained runs of any model kind: flags -> evaluation.run / compare.

  python eval.py --workdir=runs/routerdc [--split=test] [--output_dir=DIR]
  python eval.py --workdir=runs/irtnet --compare=runs/logreg,runs/knn   # one table
  python eval.py --workdir=runs/zeroeval+NEW --data_dir=DIR   # another folder, LLMs by name
With --compare, each run's difference from the first (--workdir) in AUC, log
loss and routing micro / macro comes with a 95% paired bootstrap interval over
the split's queries (irt_jax/evaluation/paired.py).
The checkpoint carries its kind, config and encoder, so no training flag is repeated.
"""

import os
import sys

from absl import app
from absl import flags

from irt_jax import logs
from irt_jax import checkpoint
from irt_jax.data import io as data_lib
from irt_jax import evaluation
from irt_jax.evaluation import report as report_lib

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", "runs/synthetic", "The training run's workdir.")
flags.DEFINE_list("compare", [], "More workdirs to evaluate beside --workdir, as one table.")
flags.DEFINE_string("split", "test", "Split to evaluate: train, val or test.")
flags.DEFINE_string("output_dir", None, "Where report.json goes (default WORKDIR/eval).")
flags.DEFINE_string("step", "best", "'best' (by val accuracy), 'latest' or a step number.")
flags.DEFINE_list("evaluators", [], "Evaluators to run (default: correctness, routing, "
                  "interpretability, calibration and, on synthetic data, synthetic_truth; "
                  "benchmark_prediction where WORKDIR/benchmark_prediction.json exists).")
flags.DEFINE_bool("calibration_temperature", False, "Also fit a temperature on val and "
                  "report calibration after it.")
flags.DEFINE_string("data_dir", None, "Evaluate on this data folder instead of the run's own "
                    "(same layout; LLMs matched by name, the folder's extra LLMs left out).")
flags.DEFINE_string("benchmark_prediction", None, "A benchmark_prediction.json (or its "
                    "folder) to include in the report.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logs.quiet_startup()
  try:
    if FLAGS.compare:
      result = evaluation.compare([FLAGS.workdir] + FLAGS.compare, FLAGS.split, FLAGS.step)
      out = FLAGS.output_dir or os.path.join(FLAGS.workdir, "eval")
      evaluation.write_compare(result, out)
      print(report_lib.format_compare(result["table"], result["dataset"], result["split"]))
      print("\n".join(report_lib.paired_lines(result)))
      return
    options = {"temperature": FLAGS.calibration_temperature}
    if FLAGS.benchmark_prediction:
      options["benchmark_prediction"] = FLAGS.benchmark_prediction
    report = evaluation.run(FLAGS.workdir, FLAGS.split, FLAGS.output_dir, FLAGS.step,
                            FLAGS.evaluators or None, options, data_dir=FLAGS.data_dir)
  except (checkpoint.CheckpointError, data_lib.DataError, ValueError) as e:
    sys.exit(f"eval.py: {e}")
  print(report_lib.format_report(report))
  if "data_subset" in report:
    print(f"note: {report['data_subset']['note']}: "
          f"{', '.join(report['data_subset']['models_left_out'])}")


if __name__ == "__main__":
  app.run(main)
