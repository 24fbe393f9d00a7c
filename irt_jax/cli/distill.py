r"""`irt-jax distill`: distils a sentence-transformers model into a static query encoder
(the work, resumable, is irt_jax.data.distill).

  irt-jax distill --model_dir=.models/all-mpnet-base-v2 --out=.models/static-mpnet \
      [--dim=256] [--weighting=sif|zipf|uniform] [--weights_from=DATA_DIR,...]
"""

from absl import flags

from irt_jax.cli import flags as cli_flags
from irt_jax.data import distill as distill_lib
from irt_jax.encoder import static

FLAGS = flags.FLAGS


def define_flags() -> None:
  flags.DEFINE_string("model_dir", None, "The sentence-transformers folder to distil.",
                      required=True)
  flags.DEFINE_string("out", None, "The static encoder folder to write.", required=True)
  flags.DEFINE_integer("dim", 256, "PCA width of the token vectors.")
  flags.DEFINE_enum("weighting", "sif", list(static.WEIGHTINGS), "Token weights.")
  flags.DEFINE_float("sif_a", 1e-3, "a in the SIF weight a / (a + p(token)).")
  flags.DEFINE_list("weights_from", None, "Data folders whose train-split prompts give the "
                    "token frequencies of --weighting=sif.")
  flags.DEFINE_integer("batch_size", 512, "One-token texts per forward pass.")
  flags.DEFINE_string("work_dir", None, "Where the raw token vectors are kept (default "
                      "OUT.work).")
  flags.DEFINE_bool("overwrite", False, "Replace an existing static encoder at --out.")


def main(argv):
  cli_flags.no_arguments(argv)
  with cli_flags.user_errors("distill"):
    out = distill_lib.build(FLAGS.model_dir, FLAGS.out, FLAGS.dim, FLAGS.weighting,
                            FLAGS.sif_a, FLAGS.weights_from, FLAGS.batch_size, FLAGS.work_dir,
                            FLAGS.overwrite)
  print(f"wrote {out}")
