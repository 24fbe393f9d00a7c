"""Micro-batching: the queries of concurrent requests scored in one call.

Requests that arrive while a batch is being encoded and scored form the next
batch (one encoder call for all their queries, up to `max_rows`), so a burst
costs a few large encoder calls instead of many small ones, and an idle
service adds no wait. Each request names the function that scores it (its
Router's `logits`), so a reload never mixes routers within a request: items of
one batch are grouped by function, and across a reload the old and the new
Router each get their own call.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import numpy as np

ScoreFn = Callable[[list[str]], np.ndarray]


class Batcher:
  """Joins the queries of concurrent requests into `fn(texts) -> logits` calls.

  One worker task takes everything queued (up to max_rows queries), runs each
  function in a thread (the event loop stays free) and hands each request its
  rows. `on_batch(rows)` is told the size of every call (metrics).
  """

  def __init__(self, fn: ScoreFn, max_rows: int, on_batch: Callable[[int], None] | None = None):
    self.fn, self.max_rows, self.on_batch = fn, max_rows, on_batch
    self.queue: asyncio.Queue | None = None
    self.task: asyncio.Task | None = None
    self.batches = 0                  # calls of a scoring function, for the bench and tests
    self.rows = 0

  def start(self) -> None:
    self.queue = asyncio.Queue()
    self.task = asyncio.get_running_loop().create_task(self._run())

  async def stop(self) -> None:
    if self.task is not None:
      self.task.cancel()
      with contextlib.suppress(asyncio.CancelledError):
        await self.task

  async def submit(self, texts: list[str], fn: ScoreFn | None = None) -> np.ndarray:
    """Logits [len(texts), M] from `fn` (default: the Batcher's own)."""
    future = asyncio.get_running_loop().create_future()
    await self.queue.put((texts, fn or self.fn, future))
    return await future

  def _take(self, first):
    """`first` and what else is queued, up to max_rows; the item that did not
    fit is returned to be the next batch's first."""
    items, rows = [first], len(first[0])
    while not self.queue.empty():
      item = self.queue.get_nowait()
      if rows + len(item[0]) > self.max_rows:
        return items, item
      items.append(item)
      rows += len(item[0])
    return items, None

  async def _run(self) -> None:
    held = None
    while True:
      first = held if held is not None else await self.queue.get()
      items, held = self._take(first)
      live = [item for item in items if not item[2].done()]   # cancelled by a gone client
      groups: dict[ScoreFn, list] = {}   # bound methods of one Router compare equal
      for item in live:
        groups.setdefault(item[1], []).append(item)
      for group in groups.values():
        await self._call(group[0][1], group)

  async def _call(self, fn: ScoreFn, items: list) -> None:
    texts = [t for ts, _, _ in items for t in ts]
    try:
      logits = await asyncio.to_thread(fn, texts)
    except Exception as e:  # noqa: BLE001 - handed to each waiting request
      for _, _, f in items:
        if not f.done():
          f.set_exception(e)
      return
    self.batches += 1
    self.rows += len(texts)
    if self.on_batch is not None:
      self.on_batch(len(texts))
    start = 0
    for ts, _, f in items:
      if not f.done():
        f.set_result(logits[start:start + len(ts)])
      start += len(ts)
