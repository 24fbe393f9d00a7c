"""Feedback on routed answers: a durable log, and abilities refitted from it.

The log is JSON lines, one record per answer judged:

    {"time": 1764754000.1, "id": "chatcmpl-irt-...", "query": "What is 17 * 23?",
     "model": "gpt-4o-mini", "correct": 1}

`query` is the text the answer was to (the service writes it when it knows
the completion id), `model` the LLM by name, `correct` 0 or 1. Each record is
appended, flushed and fsynced before it is acknowledged, so a crash can lose
at most a record nobody was told was kept; such a record can only be the last
line, torn, and the reader skips it (and the writer, reopening the file, cuts
it off so the next record starts on a line of its own). A bad line anywhere
else is corruption, and an error naming the file and line.
"""

from __future__ import annotations

import json
import logging
import os
import threading

log = logging.getLogger("irt_jax.coldstart")

FIELDS = ("query", "model", "correct")


class FeedbackError(ValueError):
  """A feedback log or record that cannot be used; the message says where."""


def check_record(record, where: str) -> dict:
  """A record with a non-empty query, a model name and correct in {0, 1}."""
  if not isinstance(record, dict):
    raise FeedbackError(f"{where}: a feedback record must be a JSON object")
  missing = [k for k in FIELDS if k not in record]
  if missing:
    raise FeedbackError(f"{where}: missing field(s) {missing}; a record has {list(FIELDS)}")
  if not isinstance(record["query"], str) or not record["query"].strip():
    raise FeedbackError(f"{where}: 'query' must be the non-empty query text")
  if not isinstance(record["model"], str) or not record["model"]:
    raise FeedbackError(f"{where}: 'model' must be a model name")
  if record["correct"] not in (0, 1) or isinstance(record["correct"], float):
    raise FeedbackError(f"{where}: 'correct' must be 0 or 1, got {record['correct']!r}")
  return record


def read_feedback(path: str) -> list[dict]:
  """Every record of a feedback log, checked; a torn last line is skipped."""
  try:
    with open(path, "rb") as f:
      raw = f.read()
  except OSError as e:
    raise FeedbackError(f"{path}: cannot read the feedback log: {e.strerror or e}") from None
  lines = raw.split(b"\n")
  torn = lines.pop()                      # b"" when the file ends with a newline
  if torn.strip():
    log.warning("%s: skipping its torn last line (%d bytes; a write cut short)", path, len(torn))
  records = []
  for number, line in enumerate(lines, start=1):
    if not line.strip():
      continue
    try:
      record = json.loads(line)
    except (ValueError, UnicodeDecodeError) as e:
      raise FeedbackError(f"{path} line {number}: not JSON ({e})") from None
    records.append(check_record(record, f"{path} line {number}"))
  return records


class FeedbackLog:
  """Appends records durably (write, flush, fsync) from any thread."""

  def __init__(self, path: str):
    self.path = path
    self._lock = threading.Lock()
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    self._file = open(path, "a+b")
    self._cut_torn_tail()

  def _cut_torn_tail(self) -> None:
    """A last line without its newline was never acknowledged: cut it off."""
    size = self._file.seek(0, os.SEEK_END)
    if size == 0:
      return
    self._file.seek(max(size - 65536, 0))
    tail = self._file.read()
    if tail.endswith(b"\n"):
      return
    cut = tail.rfind(b"\n")
    keep = size - len(tail) + cut + 1 if cut >= 0 else (0 if size <= 65536 else None)
    if keep is None:
      raise FeedbackError(f"{self.path}: its last line is over 64 KiB and has no newline; "
                          f"not a feedback log?")
    log.warning("%s: cutting off a torn last line of %d bytes", self.path, size - keep)
    self._file.truncate(keep)
    self._file.flush()
    os.fsync(self._file.fileno())

  def append(self, record: dict) -> None:
    line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
    with self._lock:
      self._file.write(line)
      self._file.flush()
      os.fsync(self._file.fileno())

  def close(self) -> None:
    with self._lock:
      self._file.close()
