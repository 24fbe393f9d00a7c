r"""Builds a run-ready data folder from evaluation logs (`irt-jax build-data`, irt_jax/cli/build_data.py).

    irt-jax build-data --out=data/mine [--threshold=0.5] [--metric=NAME] \
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
                    f"irt_jax fetch-encoder --model=mpnet --out=.models`, or pass --encoder_dir= to skip "
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
