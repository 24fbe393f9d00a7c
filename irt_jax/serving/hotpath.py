"""The hot path: POST /v1/chat/completions served by plain ASGI layers, around
FastAPI's per-request layers (its router, the dependency solver, the exception
middlewares, the telemetry layer) but through the same middlewares and endpoint.

    app = GatewayApp(title=..., lifespan=...)         # a FastAPI app
    app.hot[("POST", "/v1/chat/completions")] = lean_chain(endpoint, wrap)

A request whose method and path are in `app.hot` goes to its chain; every other
request (another method on the same path too: 405 as before) goes through
FastAPI. A chain is built from the same pieces as the FastAPI stack, in the same
order, so the replies are the same bytes: outermost the server-error layer (an
unexpected exception: a 500 in OpenAI's shape if nothing was sent yet, then
raised on, as Starlette's ServerErrorMiddleware does), then the app's own
middlewares (`wrap`: the overhead header, the keys-and-metrics guard), then the
endpoint, whose ApiError becomes its JSON error reply (the exception handler's).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from irt_jax.serving.requests import ApiError, error_body

Endpoint = Callable[[Request], Awaitable[Response]]


def error_response(exc: ApiError) -> JSONResponse:
  """An ApiError's reply: its status, headers and body in OpenAI's shape."""
  return JSONResponse(error_body(exc.message, exc.type, exc.code), status_code=exc.status,
                      headers=exc.headers)


def internal_error_response(exc: Exception) -> JSONResponse:
  """The 500 an unexpected exception gets."""
  return JSONResponse(error_body(f"internal error: {type(exc).__name__}: {exc}",
                                 "server_error"), status_code=500)


class GatewayApp(FastAPI):
  """A FastAPI app whose `hot` routes ((method, path) -> ASGI app) skip its layers."""

  def __init__(self, *args, **kwargs):
    super().__init__(*args, **kwargs)
    self.hot: dict[tuple[str, str], Callable] = {}

  async def __call__(self, scope, receive, send):
    if scope["type"] == "http":
      lean = self.hot.get((scope["method"], scope["path"]))
      if lean is not None:
        scope["app"] = self
        await lean(scope, receive, send)
        return
    await super().__call__(scope, receive, send)


class EndpointApp:
  """An endpoint as an ASGI app: its Response, or its ApiError's reply."""

  def __init__(self, endpoint: Endpoint):
    self.endpoint = endpoint

  async def __call__(self, scope, receive, send):
    try:
      response = await self.endpoint(Request(scope, receive))
    except ApiError as e:
      response = error_response(e)
    await response(scope, receive, send)


class ServerErrors:
  """An unexpected exception: the 500 reply (unless a reply was begun), then raised on."""

  def __init__(self, app):
    self.app = app

  async def __call__(self, scope, receive, send):
    started = False

    async def send_started(message):
      nonlocal started
      if message["type"] == "http.response.start":
        started = True
      await send(message)

    try:
      await self.app(scope, receive, send_started)
    except Exception as exc:
      if not started:
        await internal_error_response(exc)(scope, receive, send)
      raise


def lean_chain(endpoint: Endpoint, wrap: Callable[[Callable], Callable]) -> Callable:
  """The ASGI app serving `endpoint`: ServerErrors(wrap(EndpointApp(endpoint)))."""
  return ServerErrors(wrap(EndpointApp(endpoint)))
