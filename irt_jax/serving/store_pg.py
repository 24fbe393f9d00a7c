"""The store in PostgreSQL (psycopg 3): replicas on any number of machines
write one feedback log and one spend table.

    irt_feedback(seq bigserial, time, completion_id, query, model, correct)
    irt_spend(key_id, model, usd, prompt_tokens, completion_tokens, requests)
                                              -- one row per (key_id, model), added to

Each call takes a connection from a small pool (autocommit: every statement
is its own transaction) and returns once PostgreSQL has committed it, so an
acknowledged record survives the replica that wrote it. The tables are made
on first use, under an advisory lock so that replicas starting together do
not race. A dropped connection is replaced and the statement retried once;
a statement retried after a commit whose answer was lost may store a record
twice, which the log's readers tolerate (feedback is evidence, not money; a
spend row may then count one request twice: on the side of refusing).
"""

from __future__ import annotations

import queue
import threading

from irt_jax.serving.store_api import Store, StoreError

SCHEMA = """
CREATE TABLE IF NOT EXISTS irt_feedback (
  seq bigserial PRIMARY KEY, time double precision NOT NULL, completion_id text,
  query text NOT NULL, model text NOT NULL, correct smallint NOT NULL);
CREATE TABLE IF NOT EXISTS irt_spend (
  key_id text NOT NULL, model text NOT NULL, usd double precision NOT NULL DEFAULT 0,
  prompt_tokens bigint NOT NULL DEFAULT 0, completion_tokens bigint NOT NULL DEFAULT 0,
  requests bigint NOT NULL DEFAULT 0, PRIMARY KEY (key_id, model));
"""
SCHEMA_LOCK = 0x1A7_0033      # the advisory lock replicas take to make the tables


def redact(url: str) -> str:
  """The URL without its password, for messages."""
  try:
    from psycopg.conninfo import conninfo_to_dict, make_conninfo
    params = conninfo_to_dict(url)
  except Exception:  # noqa: BLE001 - a URL psycopg cannot parse is shown cut short
    return url.split("@")[-1]
  params.pop("password", None)
  return make_conninfo(**params)


class PgStore(Store):
  """Feedback and spend in one PostgreSQL database (`url`: a postgresql:// URL)."""

  def __init__(self, url: str, pool_size: int = 4, connect_timeout_s: float = 10.0):
    try:
      import psycopg
    except ImportError:
      raise StoreError("--store=postgresql://... needs psycopg: pip install 'psycopg[binary]'"
                       ) from None
    self.url, self.where = url, redact(url)
    self._psycopg, self._timeout = psycopg, connect_timeout_s
    self._idle: queue.LifoQueue = queue.LifoQueue()
    self._slots = threading.BoundedSemaphore(pool_size)
    self._run(self._make_tables)

  def _connect(self):
    try:
      return self._psycopg.connect(self.url, autocommit=True, connect_timeout=self._timeout)
    except self._psycopg.Error as e:
      raise StoreError(f"store {self.where}: cannot connect: {str(e).strip()}") from None

  def _run(self, fn):
    """fn(connection) on a pooled connection; a broken one is replaced, once."""
    with self._slots:
      for attempt in (0, 1):
        try:
          conn = self._idle.get_nowait()
        except queue.Empty:
          conn = self._connect()
        try:
          result = fn(conn)
        except self._psycopg.OperationalError as e:
          conn.close()
          if attempt:
            raise StoreError(f"store {self.where}: {str(e).strip()}") from None
          continue
        except BaseException:
          conn.close()
          raise
        self._idle.put(conn)
        return result

  @staticmethod
  def _make_tables(conn) -> None:
    with conn.transaction():
      conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
      conn.execute(SCHEMA)

  def append_feedback(self, record: dict) -> None:
    self._run(lambda c: c.execute(
        "INSERT INTO irt_feedback (time, completion_id, query, model, correct) "
        "VALUES (%s, %s, %s, %s, %s)",
        (record["time"], record.get("id"), record["query"], record["model"], record["correct"])))

  def read_feedback(self) -> list[dict]:
    rows = self._run(lambda c: c.execute(
        "SELECT time, completion_id, query, model, correct FROM irt_feedback ORDER BY seq"
    ).fetchall())
    return [{"time": t, "id": i, "query": q, "model": m, "correct": int(y)}
            for t, i, q, m, y in rows]

  def add_spend(self, key_id: str, model: str, usd: float, usage: dict | None = None) -> None:
    usage = usage or {}
    self._run(lambda c: c.execute(
        "INSERT INTO irt_spend AS s (key_id, model, usd, prompt_tokens, completion_tokens, "
        "requests) VALUES (%s, %s, %s, %s, %s, 1) ON CONFLICT (key_id, model) DO UPDATE SET "
        "usd = s.usd + EXCLUDED.usd, prompt_tokens = s.prompt_tokens + EXCLUDED.prompt_tokens, "
        "completion_tokens = s.completion_tokens + EXCLUDED.completion_tokens, "
        "requests = s.requests + 1",
        (key_id, model, usd, int(usage.get("prompt_tokens") or 0),
         int(usage.get("completion_tokens") or 0))))

  def spent(self, key_id: str) -> float:
    (total,) = self._run(lambda c: c.execute(
        "SELECT coalesce(sum(usd), 0) FROM irt_spend WHERE key_id = %s", (key_id,)).fetchone())
    return float(total)

  def spend_table(self) -> dict[tuple[str, str], float]:
    rows = self._run(lambda c: c.execute("SELECT key_id, model, usd FROM irt_spend").fetchall())
    return {(k, m): float(u) for k, m, u in rows}

  def close(self) -> None:
    while True:
      try:
        self._idle.get_nowait().close()
      except queue.Empty:
        return
