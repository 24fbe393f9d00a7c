"""API keys from a file: one key per line, re-read when the file changes.

Blank lines and lines starting with '#' are skipped. A key may be followed, after
a space, by its settings as a JSON object (serving/budgets.py, `KeySettings`):

    sk-team-a {"name": "team-a", "budget_usd": 25, "cost_weight": 0.3, "models": ["m1", "m2"]}
 Only SHA-256 digests of
the keys are kept, and a request's key is compared by its digest, so no key is
held in a form a log line or an error message could print. The file is
checked for a change (its mtime, size and inode) at most once a second and on
`reload()` (SIGHUP); a file that has become unreadable keeps the keys last
read, with a warning, so a half-done edit never locks everyone out.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time

from irt_jax.errors import UserError

log = logging.getLogger("irt_jax.serving")


class KeysError(UserError, ValueError):
  """A keys file that cannot be used at start-up."""


def _digest(key: str) -> bytes:
  return hashlib.sha256(key.encode("utf-8")).digest()


class KeyFile:
  """The set of valid keys of `path`; `valid(key)` re-reads the file if it changed."""

  def __init__(self, path: str, check_every_s: float = 1.0):
    self.path, self.check_every_s = path, check_every_s
    self._lock = threading.Lock()
    self._stamp = None
    self._checked = 0.0
    self.digests: frozenset[bytes] = frozenset()
    self.settings: dict[bytes, object] = {}
    try:
      self.reload()
    except OSError as e:
      raise KeysError(f"{path}: cannot read keys: {e.strerror or e}") from None
    if not self.digests:
      log.warning("%s holds no keys: every request will get 401 until one is added", path)

  def reload(self) -> None:
    """Reads the file now (raises OSError if it cannot)."""
    from irt_jax.serving.budgets import parse_settings
    stat = os.stat(self.path)
    with open(self.path, encoding="utf-8") as f:
      lines = [line.strip() for line in f]
    settings = {}
    for number, line in enumerate(lines, start=1):
      if line and not line.startswith("#"):
        key, _, rest = line.partition(" ")
        settings[_digest(key)] = parse_settings(rest, f"{self.path} line {number}")
    with self._lock:
      self.digests = frozenset(settings)
      self.settings = settings
      self._stamp = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
      self._checked = time.monotonic()

  def _refresh(self) -> None:
    if time.monotonic() - self._checked < self.check_every_s:
      return
    self._checked = time.monotonic()
    try:
      stat = os.stat(self.path)
      if (stat.st_mtime_ns, stat.st_size, stat.st_ino) != self._stamp:
        self.reload()
        log.info("%s changed: %d key(s) now valid", self.path, len(self.digests))
    except (OSError, ValueError) as e:
      log.warning("%s: cannot re-read keys (%s); keeping the %d read before", self.path,
                  getattr(e, "strerror", None) or e, len(self.digests))

  def valid(self, key: str | None) -> bool:
    if not key:
      return False
    self._refresh()
    return _digest(key) in self.digests

  def settings_of(self, key: str | None):
    """The key's KeySettings (None for a key the file does not hold)."""
    return self.settings.get(_digest(key)) if key else None


def key_id(key: str) -> str:
  """A key's name in metrics and the store: a prefix of its digest, not the key."""
  return _digest(key).hex()[:16]


def bearer(authorization: str | None) -> str | None:
  """The key of an `Authorization: Bearer <key>` header, or None."""
  if not authorization:
    return None
  scheme, _, key = authorization.partition(" ")
  return key.strip() or None if scheme.lower() == "bearer" else None
