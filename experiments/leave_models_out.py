r"""Leave-models-out evaluation of cold start (adding an LLM from k answers).

  python -m experiments.leave_models_out --data_dir=../shared/data/zeroeval --workdir=runs/lmo_zeroeval

Holds out a third of the LLMs (seeded), trains on the rest, then adds each
held-out LLM from k of its train-split answers (k in --ks), chosen at random or
adaptively, and compares on the test split with a model trained with every LLM
(same config): MAE of the held-out LLMs' per-benchmark accuracy and routing
accuracy (the protocol: irt_jax/protocols/leave_models_out.py).
The config is configs/synthetic.py's (small: 16 ability dimensions, 2 CPU
cores) with data.dir set; --config overrides it. Writes results.json,
table.md and error_vs_k.png into --workdir; rerunning resumes.
"""

from __future__ import annotations

import os
import sys

from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from irt_jax import checkpoint as ckpt_lib  # noqa: E402
from irt_jax import logs  # noqa: E402
from irt_jax import utils  # noqa: E402
from irt_jax.coldstart import ability as coldstart  # noqa: E402
from irt_jax.data import io as data_lib  # noqa: E402
from irt_jax.models import base as kind_lib  # noqa: E402
from irt_jax.protocols import leave_models_out as lmo  # noqa: E402
from irt_jax import training  # noqa: E402

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", "configs/synthetic.py", "Training config (model sizes).")
flags.DEFINE_string("data_dir", None, "Dataset folder (EmbedLLM layout).")
flags.DEFINE_string("workdir", None, "Where runs and results go.")
flags.DEFINE_float("fraction", 1 / 3, "Share of LLMs held out.")
flags.DEFINE_integer("seed", 0, "Seed of the held-out draw and the random answers.")
flags.DEFINE_list("ks", ["8", "16", "32", "64", "128", "256"], "Answers per new LLM.")
flags.DEFINE_integer("batch", 8, "Queries proposed per adaptive round.")


def main(argv):
  del argv
  logs.quiet_startup()
  config = utils.config_from_flag(FLAGS, "leave_models_out.py")
  try:
    ks = [int(k) for k in FLAGS.ks]
  except ValueError:
    raise app.UsageError(f"--ks must be integers, got {FLAGS.ks}")
  if not 0 < FLAGS.fraction < 1:
    raise app.UsageError(f"--fraction must be between 0 and 1, got {FLAGS.fraction}")
  try:
    result = lmo.run(config, FLAGS.data_dir, FLAGS.workdir, fraction=FLAGS.fraction,
                     seed=FLAGS.seed, ks=ks, batch=FLAGS.batch)
  except (data_lib.DataError, kind_lib.ConfigError, training.TrainingError,
          ckpt_lib.CheckpointError, coldstart.ColdStartError) as e:
    sys.exit(f"leave_models_out.py: {e}")  # a user's mistake: one line, non-zero exit
  print(lmo.markdown(result))


if __name__ == "__main__":
  flags.mark_flags_as_required(["data_dir", "workdir"])
  app.run(main)
