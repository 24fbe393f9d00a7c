"""A one-time binary copy of a loaded dataset, so a repeated load skips the CSV parse.

Parsing a paper-sized folder (4M split rows with prompt text, ~1.8 GB) takes
seconds to tens of seconds; the parsed `ResponseData` is ~150 MB of arrays.
`load_and_cache` keeps it as one uncompressed .npz (plain arrays only; strings as UTF-8
bytes plus offsets; read back with allow_pickle=False) under `cache_dir`,
named by a key over the loader's arguments and, per source file, its size,
mtime and a SHA-256 of its first and last MiB. Any change to a source file
(a rewrite, an append, a touch) gives a new key, so a stale copy is never
read; hashing the whole 1.8 GB would cost more than the load it saves.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from typing import Sequence

import numpy as np
from absl import logging

from irt_jax.data import io as data_lib

VERSION = 1
_EDGE = 1 << 20  # bytes hashed at each end of a source file


def _file_stamp(path: str) -> list:
  """[name, size, mtime_ns, sha256 of the first and last MiB] of a file (None if absent)."""
  if not os.path.exists(path):
    return [os.path.basename(path), None]
  st = os.stat(path)
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    digest.update(f.read(_EDGE))
    if st.st_size > 2 * _EDGE:
      f.seek(st.st_size - _EDGE)
    digest.update(f.read(_EDGE))
  return [os.path.basename(path), st.st_size, st.st_mtime_ns, digest.hexdigest()]


def cache_key(data_dir: str, *, benchmarks, embeddings_file: str, embeddings_cache: str | None,
              splits: Sequence[str], require: Sequence[str]) -> str:
  files = ["model_order.csv", "question_order.csv", *(f"{s}.csv" for s in splits)]
  emb = os.path.join(data_dir, embeddings_file)
  if not os.path.exists(emb) and embeddings_cache:
    emb = embeddings_cache
  stamps = [_file_stamp(os.path.join(data_dir, f)) for f in files] + [_file_stamp(emb)]
  request = {"version": VERSION, "dir": os.path.abspath(data_dir),
             "benchmarks": benchmarks if isinstance(benchmarks, str) or benchmarks is None
             else list(benchmarks), "splits": list(splits), "require": list(require),
             "files": stamps}
  return hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()[:24]


def _pack_strings(strings: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
  encoded = [s.encode("utf-8") for s in strings]
  offsets = np.zeros(len(encoded) + 1, np.int64)
  np.cumsum([len(b) for b in encoded], out=offsets[1:])
  return np.frombuffer(b"".join(encoded), np.uint8), offsets


def _unpack_strings(blob: np.ndarray, offsets: np.ndarray) -> tuple[str, ...]:
  raw = blob.tobytes()
  return tuple(raw[offsets[i]:offsets[i + 1]].decode("utf-8") for i in range(len(offsets) - 1))


def to_arrays(data: data_lib.ResponseData) -> dict[str, np.ndarray]:
  arrays = {"name": np.array(data.name), "embeddings": data.embeddings,
            "benchmark": data.benchmark, "split_names": np.array(list(data.splits), dtype=str)}
  fields = {"model_names": data.model_names, "query_ids": data.query_ids,
            "benchmark_names": data.benchmark_names}
  if data.prompts is not None:
    fields["prompts"] = data.prompts
  for key, strings in fields.items():
    arrays[f"{key}.bytes"], arrays[f"{key}.offsets"] = _pack_strings(strings)
  for name, split in data.splits.items():
    arrays[f"split.{name}.queries"] = split.queries
    arrays[f"split.{name}.labels"] = split.labels
  return arrays


def from_arrays(z) -> data_lib.ResponseData:
  strings = lambda key: _unpack_strings(z[f"{key}.bytes"], z[f"{key}.offsets"])
  splits = {str(name): data_lib.Split(queries=z[f"split.{name}.queries"],
                                      labels=z[f"split.{name}.labels"])
            for name in z["split_names"]}
  return data_lib.ResponseData(
      name=str(z["name"]), model_names=strings("model_names"), query_ids=strings("query_ids"),
      prompts=strings("prompts") if "prompts.bytes" in z.files else None,
      embeddings=z["embeddings"], benchmark=z["benchmark"],
      benchmark_names=strings("benchmark_names"), splits=splits)


def load_and_cache(data_dir: str, cache_dir: str | None, *, benchmarks="",
                   embeddings_file: str = "question_embeddings.npy",
                   embeddings_cache: str | None = None, splits: Sequence[str] = data_lib.SPLITS,
                   require: Sequence[str] = ("train", "val"),
                   read_from: Sequence[str] = ()) -> data_lib.ResponseData:
  """`data_lib.load_dataset` with its result kept in `cache_dir` for the next call.

  A copy is looked for in `cache_dir`, then in each folder of `read_from` (only
  read: a run being evaluated or extended keeps the copy its training left, and
  is never written to); `cache_dir=None` writes no copy. An unreadable cached copy
  is logged and skipped; a failed write (read-only or full disk) is logged and
  the freshly parsed data returned: the cache never makes a load fail that would
  succeed without it.
  """
  kwargs = dict(benchmarks=benchmarks, embeddings_file=embeddings_file,
                embeddings_cache=embeddings_cache, splits=splits, require=require)
  name = f"dataset-{cache_key(data_dir, **kwargs)}.npz"
  for folder in ([cache_dir] if cache_dir else []) + list(read_from):
    path = os.path.join(folder, name)
    if os.path.exists(path):
      try:
        with np.load(path, allow_pickle=False) as z:
          return from_arrays(z)
      except (OSError, ValueError, KeyError, UnicodeDecodeError) as e:
        logging.warning("%s: cached copy of %s unreadable (%s); reading the CSV files",
                        path, data_dir, e)
  data = data_lib.load_dataset(data_dir, **kwargs)
  if cache_dir:
    _write(data, os.path.join(cache_dir, name))
  return data


def _write(data: data_lib.ResponseData, path: str) -> None:
  """Writes a cached copy aside and renames it into place (logged, never raised)."""
  tmp = f"{path}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}.npz"
  try:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    np.savez(tmp, **to_arrays(data))
    os.replace(tmp, path)
  except OSError as e:
    logging.warning("%s: could not write the cached copy (%s)", path, e)
    if os.path.exists(tmp):
      os.remove(tmp)
