"""The service's own time on a proxied reply, measured as gateways measure it.

Every reply of a proxied endpoint (a chat completion: answered, refused or
failed) carries `x-irt-jax-overhead-ms`: the milliseconds from the request's
arrival at the app to its response headers going out, less the time spent
waiting on upstreams (every try of the request, failed ones included; for a
stream, up to its first event). It is what the service adds: keys, parsing,
encoding and ranking, the batcher's wait, building the upstream request and
the reply. The same figure, in seconds, goes to the `irt_overhead_seconds`
histogram of /metrics.

    app.add_middleware(OverheadMiddleware, observe=metrics.overhead_seconds.observe)
    ... in the endpoint: timing = Timing.of(request.scope); forwarder.send(..., timing)

A plain ASGI middleware (no request objects, no task per request), added
last so it is the outermost layer and its clock starts first.
"""

from __future__ import annotations

import time
from collections.abc import Callable

OVERHEAD_HEADER = "x-irt-jax-overhead-ms"
PROXIED_PATHS = frozenset({"/v1/chat/completions"})
SCOPE_KEY = "irt_jax.timing"


class Timing:
  """One request's clock: when it arrived and how long it waited on upstreams."""
  __slots__ = ("start", "upstream_s")

  def __init__(self, start: float | None = None):
    self.start = time.perf_counter() if start is None else start
    self.upstream_s = 0.0

  @staticmethod
  def of(scope) -> Timing | None:
    """The request's Timing (None outside the middleware, as in a bare app)."""
    return scope.get(SCOPE_KEY)

  def overhead_s(self, now: float | None = None) -> float:
    now = time.perf_counter() if now is None else now
    return max(now - self.start - self.upstream_s, 0.0)


class UpstreamClock:
  """`with UpstreamClock(timing):` adds the block's time to timing.upstream_s."""
  __slots__ = ("timing", "t0")

  def __init__(self, timing: Timing | None):
    self.timing = timing

  def __enter__(self):
    self.t0 = time.perf_counter()
    return self

  def __exit__(self, *exc):
    if self.timing is not None:
      self.timing.upstream_s += time.perf_counter() - self.t0
    return False


class OverheadMiddleware:
  """Adds OVERHEAD_HEADER to the replies of PROXIED_PATHS and tells `observe`
  the overhead in seconds."""

  def __init__(self, app, observe: Callable[[float], None] | None = None,
               paths: frozenset[str] = PROXIED_PATHS):
    self.app, self.observe, self.paths = app, observe, paths

  async def __call__(self, scope, receive, send):
    if scope["type"] != "http" or scope["path"] not in self.paths:
      await self.app(scope, receive, send)
      return
    timing = Timing()
    scope[SCOPE_KEY] = timing

    async def send_with_header(message):
      if message["type"] == "http.response.start":
        overhead = timing.overhead_s()
        headers = list(message.get("headers", ()))
        headers.append((OVERHEAD_HEADER.encode("latin-1"), f"{overhead * 1e3:.3f}".encode()))
        message = {**message, "headers": headers}
        if self.observe is not None:
          self.observe(overhead)
      await send(message)

    await self.app(scope, receive, send_with_header)
