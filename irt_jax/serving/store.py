"""Where the service keeps what outlives a process: the feedback log and the
spend per API key and model. One interface, two backends:

  FileStore   (default, nothing to install) the feedback log as JSON lines
              (`coldstart.feedback`'s format) and the spend as a second
              JSON-lines file, one line per charged request. Appends take an
              exclusive `flock` and are fsynced before they return, so the
              workers of one machine (`--workers`) may share the files.
  PgStore     (`postgresql://...`, serving/store_pg.py) both as tables of one
              PostgreSQL database, so replicas on several machines write one log;
              each record is committed before it is acknowledged.

    store = open_store("postgresql://irt@db/irt" or None, feedback_log="fb.jsonl",
                       spend_log="spend.jsonl")
    store.append_feedback(record); store.add_spend(key_id, model, usd, usage)
    store.spent(key_id) -> USD so far; store.read_feedback() -> [records]

`key_id` is a digest of the key (serving/keys.py), never the key itself.
Every call may block (disk or network): the app calls them in a thread.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
import time

from irt_jax.coldstart.feedback import FeedbackError, FeedbackLog, read_feedback
from irt_jax.serving.store_api import Store, StoreError

PG_SCHEMES = ("postgresql://", "postgres://")


class LockedLog(FeedbackLog):
  """The feedback log, its appends under an exclusive flock (safe across processes)."""

  def append(self, record: dict) -> None:
    line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
    with self._lock:
      fcntl.flock(self._file.fileno(), fcntl.LOCK_EX)
      try:
        self._file.write(line)
        self._file.flush()
        os.fsync(self._file.fileno())
      finally:
        fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)


class SpendLog:
  """Spend as JSON lines {"time", "key", "model", "usd", "prompt_tokens",
  "completion_tokens"}, appended under flock; totals are kept in memory and
  brought up to date by reading what any process appended since."""

  def __init__(self, path: str):
    self.path = path
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    self._file = open(path, "a+b")
    self._lock = threading.Lock()
    self._offset = 0
    self._totals: dict[tuple[str, str], float] = {}

  def append(self, key_id: str, model: str, usd: float, usage: dict | None) -> None:
    usage = usage or {}
    line = json.dumps({"time": round(time.time(), 3), "key": key_id, "model": model,
                       "usd": usd, "prompt_tokens": usage.get("prompt_tokens"),
                       "completion_tokens": usage.get("completion_tokens")}) + "\n"
    with self._lock:
      fcntl.flock(self._file.fileno(), fcntl.LOCK_EX)
      try:
        self._file.write(line.encode())
        self._file.flush()
        os.fsync(self._file.fileno())
      finally:
        fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)

  def totals(self) -> dict[tuple[str, str], float]:
    """{(key, model): USD}, read up to the end of the file."""
    with self._lock:
      with open(self.path, "rb") as f:
        f.seek(self._offset)
        raw = f.read()
      end = raw.rfind(b"\n") + 1            # a line still being written waits for next time
      for number, line in enumerate(raw[:end].splitlines(), start=1):
        if not line.strip():
          continue
        try:
          row = json.loads(line)
          key = (row["key"], row["model"])
          self._totals[key] = self._totals.get(key, 0.0) + float(row["usd"])
        except (ValueError, KeyError, TypeError):
          raise StoreError(f"{self.path}: a line after byte {self._offset} is not a spend "
                           f"record: {line[:80]!r}") from None
      self._offset += end
      return dict(self._totals)

  def close(self) -> None:
    with self._lock:
      self._file.close()


class FileStore(Store):
  """Feedback and spend in JSON-lines files (either may be None: that part is off,
  and spend is then counted in this process's memory only)."""

  def __init__(self, feedback_log: str | None, spend_log: str | None = None):
    self.feedback_log, self.keeps_feedback = feedback_log, bool(feedback_log)
    self._log = LockedLog(feedback_log) if feedback_log else None
    self._spend = SpendLog(spend_log) if spend_log else None
    self._memory: dict[tuple[str, str], float] = {}
    self._lock = threading.Lock()

  def append_feedback(self, record: dict) -> None:
    if self._log is None:
      raise StoreError("this store keeps no feedback log")
    self._log.append(record)

  def read_feedback(self) -> list[dict]:
    if self.feedback_log is None:
      raise StoreError("this store keeps no feedback log")
    return read_feedback(self.feedback_log)

  def add_spend(self, key_id: str, model: str, usd: float, usage: dict | None = None) -> None:
    if self._spend is not None:
      self._spend.append(key_id, model, usd, usage)
      return
    with self._lock:
      self._memory[(key_id, model)] = self._memory.get((key_id, model), 0.0) + usd

  def spend_table(self) -> dict[tuple[str, str], float]:
    if self._spend is not None:
      return self._spend.totals()
    with self._lock:
      return dict(self._memory)

  def spent(self, key_id: str) -> float:
    return sum(usd for (k, _), usd in self.spend_table().items() if k == key_id)

  def close(self) -> None:
    for part in (self._log, self._spend):
      if part is not None:
        part.close()


def is_database(spec: str | None) -> bool:
  return bool(spec) and spec.startswith(PG_SCHEMES)


def open_store(spec: str | None, feedback_log: str | None = None,
               spend_log: str | None = None) -> Store:
  """`spec` None or "file": the files; "postgresql://...": the database (then
  feedback_log and spend_log are not used)."""
  if is_database(spec):
    from irt_jax.serving.store_pg import PgStore
    return PgStore(spec)
  if spec not in (None, "", "file"):
    raise StoreError(f"--store: {spec!r} is neither 'file' nor a postgresql:// URL")
  try:
    return FileStore(feedback_log, spend_log)
  except OSError as e:
    raise StoreError(f"cannot open the store's files: {e}") from None


def read_feedback_from(source: str) -> list[dict]:
  """The feedback of a log file or a postgresql:// store (`irt-jax update`)."""
  if not is_database(source):
    return read_feedback(source)
  store = open_store(source)
  try:
    return store.read_feedback()
  finally:
    store.close()


__all__ = ["Store", "FileStore", "StoreError", "open_store", "read_feedback_from", "is_database",
           "FeedbackError"]
