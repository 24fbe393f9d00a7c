r"""Trains IrtNet: flags -> config -> training.train_and_evaluate.

  python train.py                                   # synthetic default, ~1 minute on CPU
  python train.py --config=configs/irtnet.py --config.data.dir=../shared/data/routerdc \
      --workdir=runs/routerdc
Any config field can be overridden, e.g. --config.optim.lr=3e-4. Re-running the
same command resumes from the workdir's latest checkpoint. Multi-process jobs
run the same command in every process, plus --distributed (TPU pods, Slurm) or
--coordinator_address=HOST:PORT --num_processes=N --process_id=I.
"""

import jax
from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from irt_jax import checkpoint
from irt_jax import distributed
from irt_jax import training

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", "configs/synthetic.py", "Training config file.",
                                lock_config=True)
flags.DEFINE_string("workdir", "runs/synthetic", "Checkpoints, metrics and reports go here.")
distributed.define_flags()


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  checkpoint.quiet_orbax_logs()
  distributed.initialize_from_flags()
  logging.info("config:\n%s", FLAGS.config)
  summary = training.train_and_evaluate(FLAGS.config, FLAGS.workdir)
  best = summary["best"] or {}
  if jax.process_index() == 0:
    print(f"done: best val accuracy {best.get('val_accuracy')} at step {best.get('step')}; "
          f"evaluate with: python eval.py --workdir={FLAGS.workdir}")


if __name__ == "__main__":
  app.run(main)
