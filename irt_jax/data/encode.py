r"""Embeds every prompt of a data folder's ``question_order.csv`` with a local encoder.

    irt-jax encode --data_dir=DIR --model_dir=MODEL \
        [--batch_size=64] [--max_length=N] [--dtype=float32|float16] [--output=PATH]

writes ``DIR/question_embeddings.npy`` (float32 by default; ``--dtype=float16`` gives
the shipped files' dtype), row i = embedding of row i of ``question_order.csv``.

Work is done in chunks of rows; after each chunk the rows are flushed to
``<output stem>.partial.npy`` and ``<output stem>.partial.json`` records how many rows
are done, for which model (a fingerprint of its configs and weights) and which
question_order.csv (sha256). An interrupted run started again with the same
arguments continues where it stopped; if the model, max_length or question file
changed it refuses (``--restart`` discards the partial work). The finished array is
moved into place atomically, and the side files are removed.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from irt_jax.errors import UserError
from irt_jax.data.io import read_question_order
from irt_jax.utils import sha256_of, write_json

PARTIAL_VERSION = 1
OUTPUT_DTYPES = ("float32", "float16")


class EncodeError(UserError, RuntimeError):
  """The run cannot go on (bad input, mismatched partial work)."""


def side_files(output: Path) -> tuple[Path, Path]:
  """(partial array, partial state) paths next to ``output``."""
  stem = output.name.removesuffix(".npy")
  return output.with_name(stem + ".partial.npy"), output.with_name(stem + ".partial.json")


@dataclass
class Job:
  """One run's files and progress: the partial array (a memmap) and its state record."""

  output: Path
  partial_npy: Path
  partial_json: Path
  state: dict
  store: np.ndarray


def _check_options(dtype: str, chunk_size: int) -> None:
  if dtype not in OUTPUT_DTYPES:
    raise EncodeError(f"dtype must be one of {OUTPUT_DTYPES}, got {dtype!r}")
  if chunk_size < 1:
    raise EncodeError("chunk_size must be >= 1")


def read_prompts(data_dir: Path) -> tuple[Path, list[str]]:
  """(question_order.csv, its prompts), refusing a missing file or prompt column."""
  order_file = data_dir / "question_order.csv"
  if not order_file.is_file():
    raise EncodeError(f"{order_file} not found")
  _, prompts, _ = read_question_order(str(order_file))
  if prompts is None:
    raise EncodeError(f"{order_file}: no 'prompt' column, so there is no text to encode")
  return order_file, prompts


def _resumable_rows(partial_npy: Path, partial_json: Path, state: dict, restart: bool) -> int:
  """Rows already done by an earlier run of the same job (0 when none or --restart);
  refuses partial work of another model, max_length or question file."""
  if restart:
    for p in (partial_npy, partial_json):
      p.unlink(missing_ok=True)
  if partial_json.exists() and partial_npy.exists():
    old = json.loads(partial_json.read_text(encoding="utf-8"))
    mismatched = [k for k in state if k != "rows_done" and old.get(k) != state[k]]
    if mismatched:
      detail = ", ".join(f"{k}: {old.get(k)!r} -> {state[k]!r}" for k in mismatched)
      raise EncodeError(
          f"{partial_json} holds partial work of a different run ({detail}); refusing to mix. "
          f"Rerun with the original model / question_order.csv, or pass --restart to discard it.")
    return int(old["rows_done"])
  for p in (partial_npy, partial_json):  # half-written side files: start over
    p.unlink(missing_ok=True)
  return 0


def open_job(order_file: Path, n: int, encoder, output: Path, restart: bool) -> Job:
  """Opens (or resumes) the partial array for ``n`` rows of ``encoder``'s embeddings."""
  partial_npy, partial_json = side_files(output)
  state = {"version": PARTIAL_VERSION, "model_name": encoder.name,
           "model_fingerprint": encoder.fingerprint, "max_length": encoder.max_length,
           "question_order_sha256": sha256_of(order_file), "rows": n, "dim": encoder.dim,
           "rows_done": 0}
  state["rows_done"] = _resumable_rows(partial_npy, partial_json, state, restart)
  if state["rows_done"]:
    store = np.lib.format.open_memmap(partial_npy, mode="r+")
    if store.shape != (n, encoder.dim) or store.dtype != np.float32:
      raise EncodeError(f"{partial_npy} has shape {store.shape} / {store.dtype}; pass --restart")
    print(f"resuming {output.name}: {state['rows_done']}/{n} rows already done", file=sys.stderr)
  else:
    store = np.lib.format.open_memmap(partial_npy, mode="w+", dtype=np.float32,
                                      shape=(n, encoder.dim))
    store.flush()
    write_json(partial_json, state)
  return Job(output, partial_npy, partial_json, state, store)


def encode_rows(job: Job, encoder, prompts: list[str], batch_size: int, chunk_size: int,
                progress: bool) -> None:
  """Encodes the rows not done yet, a chunk at a time, flushing the array and then the
  state after each chunk: an interruption loses at most the chunk in flight."""
  n, t0, done_here = len(prompts), time.perf_counter(), 0
  while job.state["rows_done"] < n:
    lo = job.state["rows_done"]
    hi = min(n, lo + chunk_size)
    job.store[lo:hi] = encoder.encode(prompts[lo:hi], batch_size=batch_size, progress=False)
    job.store.flush()
    job.state["rows_done"] = hi
    write_json(job.partial_json, job.state)
    done_here += hi - lo
    if progress:
      rate = done_here / (time.perf_counter() - t0)
      print(f"{hi}/{n} rows ({rate:.1f} embeddings/s)", file=sys.stderr, flush=True)


def finish(job: Job, dtype: str) -> Path:
  """Checks the array is finite and moves it into place atomically (cast to ``dtype``),
  then removes the side files."""
  result = np.asarray(job.store)
  if not np.all(np.isfinite(result)):
    raise EncodeError("non-finite values in the embeddings; partial files kept for inspection")
  if dtype == "float32":
    job.store.flush()
    del result
    job.store = None
    os.replace(job.partial_npy, job.output)
  else:
    tmp = job.output.with_name(job.output.name + ".tmp.npy")
    np.save(tmp, result.astype(dtype))
    del result
    job.store = None
    os.replace(tmp, job.output)
    job.partial_npy.unlink(missing_ok=True)
  job.partial_json.unlink(missing_ok=True)
  return job.output


def encode_question_order(data_dir: str | Path, model_dir: str | Path,
                          output: str | Path | None = None, batch_size: int = 64,
                          max_length: int | None = None, dtype: str = "float32",
                          chunk_size: int = 2048, restart: bool = False, overwrite: bool = False,
                          progress: bool = True, encoder=None) -> Path:
  """Library form of the CLI: returns the output path. ``encoder`` may be an already
  loaded encoder for ``model_dir`` (saves reloading it)."""
  _check_options(dtype, chunk_size)
  data_dir = Path(data_dir)
  order_file, prompts = read_prompts(data_dir)
  output = Path(output) if output else data_dir / "question_embeddings.npy"
  if output.exists() and not overwrite:
    raise EncodeError(f"{output} already exists; pass --overwrite to replace it")
  if encoder is None:
    # EncoderError propagates: a folder without weights or tokenizer is refused.
    from irt_jax.encoder import load_encoder
    encoder = load_encoder(str(model_dir), max_length=max_length)
  job = open_job(order_file, len(prompts), encoder, output, restart)
  encode_rows(job, encoder, prompts, batch_size, chunk_size, progress)
  return finish(job, dtype)
