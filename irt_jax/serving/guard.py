"""Keys before anything else, and every request counted by endpoint and status:
a plain ASGI middleware (no request object, no task per request; Starlette's
`@app.middleware("http")` costs a task group and a stream per request).

    app.add_middleware(Guard, refuse=..., count=..., endpoints={...})

`refuse(path, authorization header or None)` returns the response (an ASGI app)
a request must get instead, or None; `count(endpoint, status)` is told every
request's status (500 when the app raised), with paths not in `endpoints`
counted as "other".
"""

from __future__ import annotations

from collections.abc import Callable


class Guard:
  def __init__(self, app, refuse: Callable, count: Callable[[str, int], None],
               endpoints: frozenset[str] | set[str]):
    self.app, self.refuse, self.count, self.endpoints = app, refuse, count, endpoints

  async def __call__(self, scope, receive, send):
    if scope["type"] != "http":
      await self.app(scope, receive, send)
      return
    path = scope["path"]
    endpoint = path if path in self.endpoints else "other"
    authorization = None
    for name, value in scope["headers"]:
      if name == b"authorization":
        authorization = value.decode("latin-1")
        break
    status = [500]

    async def send_status(message):
      if message["type"] == "http.response.start":
        status[0] = message["status"]
      await send(message)

    refusal = self.refuse(path, authorization)
    try:
      await (refusal or self.app)(scope, receive, send_status)
    finally:
      self.count(endpoint, status[0])
