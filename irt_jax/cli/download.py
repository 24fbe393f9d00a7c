r"""`irt-jax download`: fetches the paper's dataset from Hugging Face and makes it ready
to train on (the work is irt_jax.data.download).

  irt-jax download --dataset=irtnet --out=data/irtnet [--model_dir=.models/all-mpnet-base-v2]
  irt-jax download --dataset=llmrouter --out=data/llmrouter [--source_dir=LLMRouter] \
      [--model_dir=.models/all-mpnet-base-v2]

llmrouter is rebuilt from its upstream repository (irt_jax.data.upstream).
"""

from absl import flags

from irt_jax.cli import flags as cli_flags
from irt_jax.data import download as download_lib
from irt_jax.data import upstream

FLAGS = flags.FLAGS


def define_flags() -> None:
  flags.DEFINE_enum("dataset", "irtnet", sorted(download_lib.DATASETS) + list(download_lib.UPSTREAM),
                    "Which dataset to fetch.")
  flags.DEFINE_string("source_dir", None, "llmrouter: a local copy of its upstream repository "
                      "(default: fetch the files it needs at the pinned commit).")
  flags.DEFINE_string("out", None, "Folder to download into.")
  flags.DEFINE_string("model_dir", None, "Sentence-encoder folder; if given, encode the queries.")
  flags.DEFINE_integer("batch_size", 64, "Encoder batch size.")


def main(argv):
  cli_flags.no_arguments(argv)
  cli_flags.require("out")
  if FLAGS.dataset in download_lib.UPSTREAM:
    with cli_flags.user_errors("download", also=(OSError,)):
      print(upstream.build_llmrouter(FLAGS.out, FLAGS.source_dir, encoder_dir=FLAGS.model_dir,
                                     batch_size=FLAGS.batch_size))
    return
  with cli_flags.user_errors("download"):
    root = download_lib.download(FLAGS.dataset, FLAGS.out)
    folder = download_lib.prepare(root, FLAGS.model_dir, FLAGS.batch_size)
  print(f"ready: train with --config.data.dir={folder}"
        + ("" if FLAGS.model_dir else f" (encode first: irt-jax encode "
                                      f"--data_dir={folder} --model_dir=...)"))
