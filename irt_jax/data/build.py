r"""Builds a run-ready data folder from evaluation logs.

    python -m irt_jax.data.build --out=data/mine [--threshold=0.5] [--metric=NAME] \
        [--encoder_dir=.models/all-mpnet-base-v2 | --encoder_dir=] PATH [PATH ...]

Each PATH is a file or a folder of evaluation output: score tables (CSV, JSON
lines, JSON, Parquet), lm-evaluation-harness `--log_samples` folders, inspect_ai
logs (`.eval`, `.json`) or HELM run folders, told apart by content
(`irt_jax.data.sources`). The answers are joined into one matrix by the layout's
rules (`irt_jax.data.assemble`), split by query, written in the EmbedLLM/IrtNet
CSV layout (`irt_jax.data.layout`) and its prompts embedded with the project's
encoder (`irt_jax.data.encode`; MPNet by default, any encoder folder, MiniLM or a
static one, by `--encoder_dir`; an empty `--encoder_dir=` skips it). Everything is
written to a temporary folder beside OUT and renamed into place at the end: a
failed build leaves nothing behind. Bad input ends in one line naming the file.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile

from irt_jax.data import assemble, layout
from irt_jax.data.io import DataError
from irt_jax.data.sources import detect
from irt_jax.data.sources.rows import Options

DEFAULT_ENCODER = os.path.join(".models", "all-mpnet-base-v2")


def check_out(out: str, overwrite: bool) -> str:
  out = os.path.normpath(out)
  if os.path.exists(out) and not overwrite:
    raise DataError(f"{out}: already exists; pass --overwrite to replace it or choose another --out")
  parent = os.path.dirname(os.path.abspath(out))
  if not os.path.isdir(parent):
    raise DataError(f"{parent}: no such folder to write --out={out} into; create it first")
  return out


def check_encoder(encoder_dir: str | None) -> None:
  if encoder_dir and not os.path.isdir(encoder_dir):
    raise DataError(f"{encoder_dir}: encoder folder not found; fetch it with `python -m "
                    f"irt_jax.encoder.fetch --out=.models`, or pass --encoder_dir= to skip "
                    f"the embeddings")


def _embed(folder: str, encoder_dir: str, batch_size: int, encoder=None) -> None:
  from irt_jax.data import encode  # the encoder is heavy: only when embedding
  from irt_jax.encoder import EncoderError
  try:
    encode.encode_question_order(folder, encoder_dir, batch_size=batch_size, dtype="float16",
                                 progress=True, encoder=encoder)
  except (encode.EncodeError, EncoderError) as e:
    raise DataError(f"{encoder_dir}: {e}") from e


def _replace(tmp: str, out: str) -> None:
  if os.path.exists(out):
    old = tmp + ".old"
    os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)
  else:
    os.replace(tmp, out)


def write_folder(matrix: assemble.Matrix, split, out: str, *, encoder_dir: str | None,
                 batch_size: int = 64, encoder=None, extra: dict | None = None) -> None:
  """Writes the layout (and `extra` {file name: DataFrame}) into a temporary folder
  beside `out`, embeds the prompts, and renames it into place; removes it on failure."""
  tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(out)}.", suffix=".partial",
                         dir=os.path.dirname(os.path.abspath(out)))
  try:
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp's folder is private; the result is not
    layout.write_csvs(matrix, split, tmp)
    for name, frame in (extra or {}).items():
      frame.to_csv(os.path.join(tmp, name), index=False)
    if encoder_dir:
      _embed(tmp, encoder_dir, batch_size, encoder)
    _replace(tmp, out)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise


def build(inputs: list[str], out: str, options: Options = Options(), *,
          threshold: float | None = None, encoder_dir: str | None = DEFAULT_ENCODER,
          split_name: str | None = None, overwrite: bool = False, batch_size: int = 64,
          encoder=None) -> str:
  """Builds `out` from the evaluation files under `inputs`; returns the summary.

  `split_name` seeds the query split (default: the folder name of `out`, as the
  shared folders were); `encoder` may be an already loaded encoder for `encoder_dir`.
  """
  out = check_out(out, overwrite)
  if encoder is None:
    check_encoder(encoder_dir)
  if not inputs:
    raise DataError("no inputs: pass evaluation files or folders after the flags")
  frames = detect.read_inputs(list(inputs), options)
  matrix = assemble.join(frames, threshold, options.benchmark or "unknown")
  split = assemble.split_of_queries(matrix, split_name or os.path.basename(out))
  write_folder(matrix, split, out, encoder_dir=encoder_dir, batch_size=batch_size,
               encoder=encoder)
  return layout.summary(matrix, split, out)


def one_line(error: Exception) -> str:
  return " ".join(str(error).split())


def main(argv: list[str]) -> None:
  options = Options(metric=FLAGS.metric, lm_eval_filter=FLAGS.lm_eval_filter, model=FLAGS.model,
                    benchmark=FLAGS.benchmark, model_column=FLAGS.model_column,
                    prompt_column=FLAGS.prompt_column, score_column=FLAGS.score_column,
                    benchmark_column=FLAGS.benchmark_column)
  try:
    text = build(argv[1:], FLAGS.out, options, threshold=FLAGS.threshold,
                 encoder_dir=FLAGS.encoder_dir or None, split_name=FLAGS.split_name,
                 overwrite=FLAGS.overwrite, batch_size=FLAGS.batch_size)
  except (DataError, OSError) as e:
    print(f"error: {one_line(e)}", file=sys.stderr)
    sys.exit(2)
  print(text)
  if not FLAGS.encoder_dir:
    print(f"no embeddings written: python -m irt_jax.data.encode --data_dir={FLAGS.out} "
          f"--model_dir=... adds them")


if __name__ == "__main__":
  from absl import app, flags

  flags.DEFINE_string("out", None, "Data folder to create.", required=True)
  flags.DEFINE_float("threshold", None, "Scores >= this count as correct; required when "
                     "scores are not 0/1.")
  flags.DEFINE_string("metric", None, "lm-eval metric, inspect scorer or HELM stat to read "
                      "(default: the task's primary metric, the log's first scorer, exact_match).")
  flags.DEFINE_string("lm_eval_filter", None, "lm-eval filter whose rows to read (default "
                      "'none', else the first in the file).")
  flags.DEFINE_string("model", None, "Model name for every input (when the logs name none).")
  flags.DEFINE_string("benchmark", None, "Benchmark of inputs that name none (default 'unknown').")
  flags.DEFINE_string("model_column", None, "Tables: the model column.")
  flags.DEFINE_string("prompt_column", None, "Tables: the prompt text column.")
  flags.DEFINE_string("score_column", None, "Tables: the label or score column.")
  flags.DEFINE_string("benchmark_column", None, "Tables: the benchmark column.")
  flags.DEFINE_string("encoder_dir", DEFAULT_ENCODER, "Encoder folder for the embeddings "
                      "(MPNet, MiniLM or a static encoder); empty: write none.")
  flags.DEFINE_integer("batch_size", 64, "Encoder batch size.")
  flags.DEFINE_string("split_name", None, "Seeds the query split (default: the --out folder name).")
  flags.DEFINE_bool("overwrite", False, "Replace an existing --out folder.")
  FLAGS = flags.FLAGS
  app.run(main)
