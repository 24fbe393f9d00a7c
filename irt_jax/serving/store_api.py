"""The store's interface (serving/store.py has the file backend and `open_store`,
serving/store_pg.py the PostgreSQL one)."""

from __future__ import annotations

from irt_jax.errors import UserError


class StoreError(UserError, ValueError):
  """A store that cannot be opened or used; the message names it (no password)."""


class Store:
  """The interface; both backends implement every method."""
  keeps_feedback = True         # False: /v1/feedback is off

  def append_feedback(self, record: dict) -> None:
    raise NotImplementedError

  def read_feedback(self) -> list[dict]:
    raise NotImplementedError

  def add_spend(self, key_id: str, model: str, usd: float, usage: dict | None = None) -> None:
    raise NotImplementedError

  def spent(self, key_id: str) -> float:
    """USD spent by `key_id` so far, over every process that shares the store."""
    raise NotImplementedError

  def spend_table(self) -> dict[tuple[str, str], float]:
    """{(key_id, model): USD} over the whole store."""
    raise NotImplementedError

  def close(self) -> None:
    pass
