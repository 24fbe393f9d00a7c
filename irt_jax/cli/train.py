r"""`irt-jax train` (and `python train.py`): trains a model kind (flags -> config -> data ->
training.run; trains or fits, by the kind).

  irt-jax train                                    # synthetic default, ~1 minute on CPU
  irt-jax train --config=configs/irtnet.py --config.data.dir=../shared/data/routerdc \
      --workdir=runs/routerdc
Any config field can be overridden, e.g. --config.optim.lr=3e-4. Re-running the
same command resumes from the workdir's latest checkpoint. Multi-process jobs
run the same command in every process, plus --distributed (TPU pods, Slurm) or
--coordinator_address=HOST:PORT --num_processes=N --process_id=I.
"""

from irt_jax import utils

utils.retain_freed_memory()  # before jax or numpy start threads (see its docstring)

import jax  # noqa: E402
from absl import app  # noqa: E402
from absl import flags  # noqa: E402
from absl import logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from irt_jax import logs  # noqa: E402
from irt_jax.cli import flags as cli_flags  # noqa: E402
from irt_jax.training import distributed  # noqa: E402
from irt_jax import training  # noqa: E402

FLAGS = flags.FLAGS


def define_flags() -> None:
  config_flags.DEFINE_config_file("config", utils.config_file("synthetic"), "Training config file.",
                                  lock_config=True)
  flags.DEFINE_string("workdir", "runs/synthetic", "Checkpoints, metrics and reports go here.")
  flags.DEFINE_bool("distributed", False,
                    "Join a multi-process job with JAX's auto-detection (TPU pods, Slurm, "
                    "Open MPI).")
  flags.DEFINE_string("coordinator_address", None,
                      "HOST:PORT of process 0 (it runs the coordination service there).")
  flags.DEFINE_integer("num_processes", None, "Processes in the job.")
  flags.DEFINE_integer("process_id", None, "This process's index, 0..num_processes-1.")
  flags.DEFINE_integer("heartbeat_timeout", 60,
                       "Seconds without a heartbeat after which a process counts as dead "
                       "and the whole job stops with an error.")
  flags.DEFINE_integer("initialization_timeout", 300,
                       "Seconds to wait for every process to join the job.")
  flags.DEFINE_integer("shutdown_timeout", 60,
                       "Seconds a finished process waits for the others at exit.")
  flags.DEFINE_bool("log_all_processes", False,
                    "Log INFO from every process (default: process 0 only; the others "
                    "log warnings and errors).")
  flags.DEFINE_enum("cpu_collectives", "gloo", ["gloo", "mpi", "none"],
                    "Cross-process collectives of the CPU backend in a multi-process job "
                    "('none' leaves JAX's default, which cannot run them).")


def main(argv):
  cli_flags.no_arguments(argv)
  logs.quiet_startup()
  try:
    distributed.join(auto_detect=FLAGS.distributed,
                     coordinator_address=FLAGS.coordinator_address,
                     num_processes=FLAGS.num_processes, process_id=FLAGS.process_id,
                     log_all_processes=FLAGS.log_all_processes,
                     cpu_collectives=FLAGS.cpu_collectives,
                     heartbeat_timeout=FLAGS.heartbeat_timeout,
                     initialization_timeout=FLAGS.initialization_timeout,
                     shutdown_timeout=FLAGS.shutdown_timeout)
  except ValueError as e:
    raise app.UsageError(str(e))
  config = utils.config_from_flag(FLAGS, "train")
  logging.vlog(1, "config:\n%s", config)  # saved with the checkpoints; shown with --verbosity=1
  with cli_flags.user_errors("train"):
    spec = training.resolve(config)  # every check: a config mistake costs no data preparation
    summary = training.run(spec, FLAGS.workdir)  # prepares the data, trains or fits
  best = summary["best"] or {}
  if jax.process_index() == 0:
    print(f"done: best val accuracy {best.get('val_accuracy')} at step {best.get('step')}; "
          f"evaluate with: irt-jax eval --workdir={FLAGS.workdir}")
