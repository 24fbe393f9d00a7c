"""Small generic helpers shared by the data, checkpoint and encoder modules.

Nothing here knows about IRT: hashing files in blocks (weights and datasets can be
large), writing JSON so that a crash never leaves a half-written file, reading
run records back, config overrides given as strings, config files from flags,
and the allocator setting every entry point makes.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

from irt_jax.errors import UserError

BLOCK_BYTES = 1 << 22  # 4 MiB


class ConfigError(UserError, ValueError):
  """A config that names an unknown kind, layout or field: train.py and the scripts
  turn it into one line."""


def update_hash(h: "hashlib._Hash", path: str | Path) -> None:
  """Feeds a file to a hashlib object in 4 MiB blocks (never the whole file at once)."""
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(BLOCK_BYTES), b""):
      h.update(block)


def sha256_of(path: str | Path) -> str:
  """Hex sha256 of a file's bytes."""
  h = hashlib.sha256()
  update_hash(h, path)
  return h.hexdigest()


def write_json(path: str | os.PathLike, obj) -> None:
  """Writes JSON atomically (temporary file, fsync, rename): a crash leaves the old file."""
  tmp = f"{path}.tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    json.dump(obj, f, indent=2)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


def read_records(path: str | os.PathLike, required: set[str]) -> list[dict]:
  """A JSON-lines file of run records, each an object with the `required` keys.

  The scripts that resume long comparisons append one line per finished run; a line
  that is not a record (a run killed mid-write, a merge left in the file) raises
  ValueError naming the file and line, rather than failing later or skipping it.
  """
  records = []
  with open(path) as f:
    for number, line in enumerate(f, 1):
      try:
        record = json.loads(line)
        if not isinstance(record, dict) or not required <= record.keys():
          raise ValueError
      except ValueError:
        raise ValueError(f"{path}, line {number}: not a run record (delete or repair the line; "
                         "finished runs are listed one JSON object a line)") from None
      records.append(record)
  return records


def apply_overrides(config, items) -> None:
  """Sets `key.path=value` strings on an ml_collections ConfigDict, in place.

  The scripts that run many configurations (compare_kinds, search_recommended)
  take overrides as strings, like absl's --config.x.y=v. A value is read as the
  type of the field it replaces, so `train.num_epochs=3` stays an int and
  `model.dropout=1` becomes 1.0; an unknown key raises ValueError listing the valid
  ones at that level, instead of silently adding a field no code reads.
  """
  for item in items:
    key, sep, text = item.partition("=")
    if not sep or not key:
      raise ValueError(f"override {item!r}: expected key=value (e.g. train.batching=pairs)")
    node, path = config, key.split(".")
    for depth, name in enumerate(path):
      if not hasattr(node, "keys") or name not in node:
        valid = ", ".join(sorted(node.keys())) if hasattr(node, "keys") else "none (a value)"
        raise ValueError(f"override {item!r}: no field {'.'.join(path[:depth + 1])!r}; "
                         f"valid there: {valid}")
      if depth < len(path) - 1:
        node = node[name]
    node[path[-1]] = _typed_like(node[path[-1]], text, item)


def config_file(name: str) -> str:
  """configs/<name>.py beside the irt_jax package, found from this file.

  A tool's default config must not depend on the working directory: `irt-jax
  predict-benchmark` runs from anywhere once installed. configs/ sits next
  to irt_jax/ in a checkout, an editable install and a wheel (which ships it).
  """
  return str(Path(__file__).resolve().parent.parent / "configs" / f"{name}.py")


def load_config(name: str):
  """get_config() of configs/<name>.py beside the package; a missing file is a ConfigError."""
  import importlib.util
  path = config_file(name)
  if not os.path.isfile(path):
    raise ConfigError(f"no configs/{name}.py")
  spec = importlib.util.spec_from_file_location(f"configs.{name}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def config_from_flag(flags_values, program: str, name: str = "config"):
  """The config of a `config_flags.DEFINE_config_file` flag, or one line and exit 1.

  ml_collections defers a config file's load error (missing file, an exception in
  its get_config) to the first attribute read, as a multi-line OSError traceback
  from deep in training; an entry point calls this first instead.
  """
  config = flags_values[name].value
  try:
    config.keys()
  except OSError as e:
    reason = str(e).strip().splitlines()[-1].strip()
    sys.exit(f"{program}: --{name}: cannot be loaded: {reason}")
  return config


def _typed_like(current, text: str, item: str):
  if hasattr(current, "keys"):
    raise ValueError(f"override {item!r}: that is a group of fields "
                     f"({', '.join(sorted(current.keys()))}), not one value")
  if isinstance(current, bool):
    if text.lower() not in ("true", "false"):
      raise ValueError(f"override {item!r}: expected true or false")
    return text.lower() == "true"
  for kind in (int, float):
    if isinstance(current, kind):
      try:
        return kind(text)
      except ValueError:
        raise ValueError(f"override {item!r}: expected {kind.__name__}") from None
  if current is None:  # untyped field: the literal's own type
    for kind in (int, float):
      try:
        return kind(text)
      except ValueError:
        pass
  return text


def retain_freed_memory(one_arena: bool = True) -> bool:
  """Asks glibc's malloc to keep freed memory for reuse; False where there is none.

  XLA's CPU runtime allocates a step's large temporary buffers afresh on every
  execution. glibc serves any allocation over 32 MB with its own mmap and
  unmaps it on free, so each step page-faults its temporaries in again (and
  the kernel zeroes them): 82 -> 54 ms per training step at the paper's
  shape (`experiments/bench/step_variants.py`, variant `pmap_system_malloc`). With mmap off
  for allocations and no trimming of the heap's top, freed buffers are reused
  as they are.

  XLA allocates from its worker threads, and a thread with its own malloc arena
  maps any request over that arena's 64 MB heap limit with mmap whatever
  M_MMAP_MAX says: the pairs layout's 2048-row step (a 700 MB temporary) still
  faulted 225,000 pages in per step (0.37 s of kernel time, 3-10% of the step).
  So every thread shares the main arena (M_ARENA_MAX = 1), which only holds for
  threads that have not allocated yet: entry points call this first, before importing jax or numpy
  (train.py, the scripts and benches); `train_and_evaluate` calls it again for
  programs that did not. The process keeps its peak memory instead of returning
  it to the system, which suits a training job. Process-wide and idempotent.
  `one_arena=False` leaves the threads' arenas as they are (a bench variant).
  """
  import ctypes
  import ctypes.util
  m_trim_threshold, m_mmap_max, m_arena_max = -1, -4, -8  # mallopt parameters, <malloc.h>
  try:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    mallopt = libc.mallopt
  except (OSError, AttributeError):  # not glibc (macOS, musl without mallopt)
    return False
  arenas = bool(mallopt(m_arena_max, 1)) if one_arena else True
  return arenas and bool(mallopt(m_mmap_max, 0)) and bool(mallopt(m_trim_threshold, 2**31 - 1))
