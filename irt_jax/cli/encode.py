r"""`irt-jax encode`: embeds every prompt of a data folder's question_order.csv with a
local encoder (the work, resumable, is irt_jax.data.encode).

  irt-jax encode --data_dir=DIR --model_dir=MODEL \
      [--batch_size=64] [--max_length=N] [--dtype=float32|float16] [--output=PATH]
"""

from absl import flags

from irt_jax.cli import flags as cli_flags
from irt_jax.data import encode as encode_lib

FLAGS = flags.FLAGS


def define_flags() -> None:
  flags.DEFINE_string("data_dir", None, "Folder with question_order.csv.", required=True)
  flags.DEFINE_string("model_dir", None, "Local sentence-transformers model folder.",
                      required=True)
  flags.DEFINE_integer("batch_size", 64, "Texts per forward pass.")
  flags.DEFINE_integer("max_length", None, "Token limit (default: the model's max_seq_length).")
  flags.DEFINE_enum("dtype", "float32", list(encode_lib.OUTPUT_DTYPES),
                    "dtype of the written array.")
  flags.DEFINE_string("output", None, "Output .npy (default DATA_DIR/question_embeddings.npy).")
  flags.DEFINE_integer("chunk_size", 2048,
                       "Rows encoded between two checkpoints of the partial file.")
  flags.DEFINE_bool("restart", False,
                    "Discard partial work of an earlier run instead of resuming it.")
  flags.DEFINE_bool("overwrite", False, "Replace an existing output file.")


def main(argv):
  cli_flags.no_arguments(argv)
  import numpy as np
  with cli_flags.user_errors("encode"):
    out = encode_lib.encode_question_order(
        data_dir=FLAGS.data_dir, model_dir=FLAGS.model_dir, output=FLAGS.output,
        batch_size=FLAGS.batch_size, max_length=FLAGS.max_length, dtype=FLAGS.dtype,
        chunk_size=FLAGS.chunk_size, restart=FLAGS.restart, overwrite=FLAGS.overwrite,
        progress=True)
  arr = np.load(out, mmap_mode="r")
  print(f"wrote {out} ({arr.shape[0]} x {arr.shape[1]}, {arr.dtype})")
