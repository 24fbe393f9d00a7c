r"""Evaluates a trained run: correctness and routing on a split -> report.json.

  python eval.py --workdir=runs/routerdc [--split=test] [--output_dir=DIR]
The checkpoint carries its config, so no training flag is repeated.
"""

from absl import app
from absl import flags

from irt_jax import checkpoint
from irt_jax import evaluation

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", "runs/synthetic", "The training run's workdir.")
flags.DEFINE_string("split", "test", "Split to evaluate: train, val or test.")
flags.DEFINE_string("output_dir", None, "Where report.json goes (default WORKDIR/eval).")
flags.DEFINE_string("step", "best", "'best' (by val accuracy), 'latest' or a step number.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  checkpoint.quiet_orbax_logs()
  report = evaluation.run(FLAGS.workdir, FLAGS.split, FLAGS.output_dir, FLAGS.step)
  print(evaluation.format_report(report))


if __name__ == "__main__":
  app.run(main)
