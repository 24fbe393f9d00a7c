"""Small generic helpers shared by the data, checkpoint and encoder modules.

Nothing here knows about IRT: hashing files in blocks (weights and datasets can be
large) and writing JSON so that a crash never leaves a half-written file.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

BLOCK_BYTES = 1 << 22  # 4 MiB


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
