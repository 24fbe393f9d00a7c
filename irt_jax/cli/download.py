r"""`irt-jax download`: fetches the paper's dataset from Hugging Face and makes it ready
to train on (the work is irt_jax.data.download).

  irt-jax download --dataset=irtnet --out=data/irtnet [--model_dir=.models/all-mpnet-base-v2]
"""

from absl import flags

from irt_jax.cli import flags as cli_flags
from irt_jax.data import download as download_lib

FLAGS = flags.FLAGS


def define_flags() -> None:
  flags.DEFINE_enum("dataset", "irtnet", sorted(download_lib.DATASETS), "Which dataset to fetch.")
  flags.DEFINE_string("out", None, "Folder to download into.")
  flags.DEFINE_string("model_dir", None, "Sentence-encoder folder; if given, encode the queries.")
  flags.DEFINE_integer("batch_size", 64, "Encoder batch size.")


def main(argv):
  cli_flags.no_arguments(argv)
  cli_flags.require("out")
  with cli_flags.user_errors("download"):
    root = download_lib.download(FLAGS.dataset, FLAGS.out)
    folder = download_lib.prepare(root, FLAGS.model_dir, FLAGS.batch_size)
  print(f"ready: train with --config.data.dir={folder}"
        + ("" if FLAGS.model_dir else f" (encode first: irt-jax encode "
                                      f"--data_dir={folder} --model_dir=...)"))
