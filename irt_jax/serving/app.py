"""The routing service: an OpenAI-compatible front for a Router (FastAPI app factory).

    app = create_app(router, upstreams, Limits())   # served by uvicorn (irt_jax/cli/serve.py)

Endpoints (all but /health need `Authorization: Bearer <key>` when the service
has a keys file; /admin/* needs an admin key):
  GET  /health                open: status, the router, each upstream's cool-down
  GET  /metrics               Prometheus text format (serving/metrics.py)
  GET  /v1/models             the routers offered and the LLMs routed among
  POST /route                 {"queries": [...], "cost_weight": 0, "candidates": [...], "budget": x}
  POST /v1/chat/completions   OpenAI chat request; `model` = "router-<kind>[-<cost_weight>]"
                              or "router-<kind>@alpha=<a>" (the balance cost rule)
                              routes the last user message and forwards the request to the
                              best-ranked model whose upstream answers (serving/upstream.py:
                              fallbacks, cool-downs); an upstreams file's model passes through.
  POST /v1/feedback           {"id": <completion id or query text>, "model": ..., "correct": 0|1}
                              appended to the store's feedback log (serving/feedback.py, store.py)
  POST /admin/reload          {"workdir": optional} swaps in a newly loaded Router (also SIGHUP)
  POST /explain, GET /ui ...  why a query went where; the service's page (serving/page.py)

Every chat reply carries x-irt-jax-overhead-ms (serving/overhead.py). Every error
is a JSON body in OpenAI's shape, {"error": {"message", "type", "code"}}, so OpenAI
clients raise it: 400 bad input, 401 no valid key, 404 unknown model, 413 oversized
body, 502 every upstream tried failed, 503 store down, 504 too slow.

A reload is atomic: each request takes the Router serving when it arrives and
uses it to the end (its batch is scored by that Router), so a request in flight
during a reload finishes on the old one and none is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import signal
import time
from collections.abc import Callable

from fastapi import Request

from irt_jax import numerics
from irt_jax.routing.router import Router, RouterError
from irt_jax.serving.batcher import Batcher
from irt_jax.serving.chat import P_HEADER, add_chat_route
from irt_jax.serving.feedback import COMPLETION_HEADER, CompletionIds, parse_feedback
from irt_jax.serving.guard import Guard
from irt_jax.serving.hotpath import (GatewayApp, error_response, internal_error_response,
                                     lean_chain)
from irt_jax.serving.keys import KeyFile, bearer
from irt_jax.serving import gc_tuning, page
from irt_jax.serving.metrics import CONTENT_TYPE, Metrics
from irt_jax.serving.overhead import OVERHEAD_HEADER, OverheadMiddleware
from irt_jax.serving.store import FileStore, Store, StoreError
from irt_jax.serving.requests import ApiError, Limits, error_body, parse_route_request, read_json
from irt_jax.serving.upstream import (FAILED_HEADER, ROUTED_HEADER, Fallbacks, Forwarder, Upstream,
                                      UpstreamsError, load_upstreams, parse_upstreams)

__all__ = ["create_app", "Limits", "Fallbacks", "Access", "ApiError", "error_body", "Batcher",
           "Upstream", "UpstreamsError", "load_upstreams", "parse_upstreams", "ROUTED_HEADER",
           "FAILED_HEADER", "P_HEADER", "COMPLETION_HEADER", "OVERHEAD_HEADER"]

OPEN_PATHS = {"/health"} | page.PAGE_PATHS
ENDPOINTS = {"/health", "/metrics", "/v1/models", "/route", "/v1/chat/completions",
             "/v1/feedback", "/admin/reload"} | page.ENDPOINTS
log = logging.getLogger("irt_jax.serving")

# (workdir or None for the one serving now, the Router serving now) -> a new Router
Reloader = Callable[[str | None, Router], Router]


@dataclasses.dataclass(frozen=True)
class Access:
  """Who may call: API keys (None: anyone) and admin keys (None: no /admin)."""
  keys: KeyFile | None = None
  admin_keys: KeyFile | None = None

  def refusal(self, path: str, authorization: str | None) -> ApiError | None:
    """The error a request for `path` gets, or None when it may go on."""
    if path in OPEN_PATHS:
      return None
    key = bearer(authorization)
    if path.startswith("/admin/"):
      if self.admin_keys is None:
        return ApiError(403, "admin endpoints are off: start the service with "
                             "--admin_keys_file=FILE (SIGHUP reloads without one)",
                        code="admin_off")
      store = self.admin_keys
    elif self.keys is None:
      return None
    else:
      store = self.keys
    if store.valid(key):
      return None
    return ApiError(401, "missing or invalid API key: send 'Authorization: Bearer <key>' with a "
                         "key from the service's keys file", code="invalid_api_key")


class Service:
  """The app's state: the Router serving now (swapped whole by `reload`), the
  batcher, the upstream forwarder, the store (feedback) and the metrics."""

  def __init__(self, router: Router, upstreams: dict[str, Upstream], limits: Limits,
               fallbacks: Fallbacks, access: Access, store: Store,
               reloader: Reloader | None, transport=None):
    self.router, self.upstreams, self.limits = router, upstreams, limits
    self.fallbacks, self.access, self.reloader = fallbacks, access, reloader
    self.metrics = Metrics()
    self.batcher = Batcher(router.logits, limits.max_batch_queries, self.metrics.batch)
    self.forwarder = Forwarder(upstreams, limits.upstream_timeout_s, fallbacks, self.metrics,
                               transport)
    self.store = store
    self.ids = CompletionIds()
    self.reloads = 0
    self.last_reload: dict | None = None    # shown by the page (serving/page.py)
    self._reload_lock: asyncio.Lock | None = None
    self._tasks: set[asyncio.Task] = set()

  def prefix(self, router: Router | None = None) -> str:
    return f"router-{(router or self.router).name}"

  def routable(self, router: Router) -> list[str]:
    return [m for m in router.model_names if m in self.upstreams]

  async def start(self) -> None:
    self._reload_lock = asyncio.Lock()
    await self.forwarder.start()
    self.batcher.start()
    await self.batcher.submit(["warm up"])   # loads the encoder (once) and compiles
    with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):
      asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self.on_sighup)

  async def stop(self) -> None:
    with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):
      asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
    await self.batcher.stop()
    await self.forwarder.close()
    self.store.close()

  def on_sighup(self) -> None:
    """SIGHUP: re-read the keys files, and reload the Router if there is a run to reload."""
    for store in (self.access.keys, self.access.admin_keys):
      if store is not None:
        with contextlib.suppress(OSError):
          store.reload()
    if self.reloader is not None:
      task = asyncio.get_running_loop().create_task(self._reload_logged())
      self._tasks.add(task)
      task.add_done_callback(self._tasks.discard)

  async def _reload_logged(self) -> None:
    try:
      result = await self.reload(None)
      log.info("SIGHUP: reloaded %s (%d models)", result["workdir"], len(result["models"]))
    except ApiError as e:
      log.error("SIGHUP: %s", e.message)

  async def reload(self, workdir: str | None) -> dict:
    """Loads a Router (in a thread, warmed up) and swaps it in; the old one
    keeps serving until then, and serves on if loading fails."""
    if self.reloader is None:
      raise ApiError(400, "this service was given no run to reload from", code="no_reload")
    async with self._reload_lock:
      old = self.router

      def load() -> Router:
        new = self.reloader(workdir, old)
        new.logits(["warm up"])
        return new

      try:
        new = await asyncio.to_thread(load)
      except Exception as e:  # noqa: BLE001 - any failure leaves the old Router serving
        self.metrics.reloads.labels("failed").inc()
        self.last_reload = {"time": time.time(), "result": "failed", "error": str(e)[:500]}
        raise ApiError(400, f"reload failed, still serving {old.workdir or self.prefix(old)}: "
                            f"{type(e).__name__}: {e}", code="reload_failed") from None
      self.router = new
      self.batcher.fn = new.logits
      self.reloads += 1
      self.last_reload = {"time": time.time(), "result": "ok", "workdir": new.workdir}
      self.metrics.reloads.labels("ok").inc()
    return {"router": self.prefix(new), "workdir": new.workdir, "models": list(new.model_names),
            "reloads": self.reloads}

  async def plan(self, router: Router, text: str, weight: float,
                 allowed=None, alpha: float | None = None) -> tuple[list[str], dict]:
    """The models to try for a chat query, best first (cooling ones last), and
    P(correct); `allowed` (the key's models, None: all) bounds them. With
    `alpha`, the models are ranked by the balance rule instead of the cost weight."""
    routable = [m for m in self.routable(router) if allowed is None or m in allowed]
    if not routable:
      raise ApiError(503, "no upstream is configured for any model this router chooses "
                          "among; give --upstreams", "server_error", "no_upstream")
    start = time.perf_counter()
    logits = await self.batcher.submit([text], router.logits)
    cooling = sum(self.forwarder.cooldowns.cooling(m) for m in routable)
    tries = 1 + self.fallbacks.fallbacks
    try:
      (ranking,) = router.rank_logits(logits, weight, routable, k=tries + cooling, texts=[text],
                                      rule="linear" if alpha is None else "balance", alpha=alpha)
    except RouterError as e:
      raise ApiError(400, str(e)) from None
    self.metrics.route_seconds.observe(time.perf_counter() - start)
    p = dict(zip(router.model_names, numerics.sigmoid(logits[0]).tolist()))
    return self.forwarder.cooldowns.order(ranking)[:tries], p

  def health(self) -> dict:
    router = self.router
    upstreams = self.forwarder.cooldowns.snapshot(sorted(self.upstreams))
    return {"status": "ok", "router": self.prefix(router), "workdir": router.workdir,
            "pid": os.getpid(), "models": len(router.model_names), "batches": self.batcher.batches,
            "routable": len(self.routable(router)), "reloads": self.reloads,
            "cooling_down": [m for m, s in upstreams.items() if s["state"] == "cooling_down"],
            "upstreams": upstreams}


def create_app(router: Router, upstreams: dict[str, Upstream] | None = None,
               limits: Limits | None = None, transport=None, *,
               fallbacks: Fallbacks | None = None, access: Access | None = None,
               feedback_log: str | None = None, reloader: Reloader | None = None,
               store: Store | None = None, prices: dict | None = None, calibration=None,
               settle_gc: bool = False):
  """The service's FastAPI app. `transport` (an aiohttp connector) is for tests;
  `reloader` makes /admin/reload and SIGHUP work; `store` (serving/store.py,
  or `feedback_log`: a file store with that log) turns on /v1/feedback;
  `prices` {model: (input, output) USD per million tokens} prices answers;
  `calibration` (serving/calibrate.py) serves router-<kind>@share=S;
  `settle_gc` (for a process that serves only this app) sets the garbage
  collector for serving once started (serving/gc_tuning.py)."""
  svc = Service(router, dict(upstreams or {}), limits or Limits(), fallbacks or Fallbacks(),
                access or Access(), store or FileStore(feedback_log), reloader, transport)
  svc.prices, svc.calibration = dict(prices or {}), calibration

  @contextlib.asynccontextmanager
  async def lifespan(app):
    await svc.start()
    if settle_gc:
      gc_tuning.settle()
    try:
      yield
    finally:
      await svc.stop()

  app = GatewayApp(title="irt_jax router", lifespan=lifespan)
  app.state.service = svc
  app.state.batcher = svc.batcher
  guard = _add_guard(app, svc)
  _add_info_routes(app, svc)
  _add_route_route(app, svc)
  chat = add_chat_route(app, svc)
  _add_feedback_and_admin(app, svc)
  page.add_routes(app, svc)
  overhead = dict(observe=svc.metrics.overhead_seconds.observe)
  app.add_middleware(OverheadMiddleware, **overhead)
  # The hot path (serving/hotpath.py): the same middlewares and endpoint, without FastAPI's layers.
  app.hot[("POST", "/v1/chat/completions")] = lean_chain(
      chat, lambda inner: OverheadMiddleware(Guard(inner, **guard), **overhead))
  return app


def _add_guard(app, svc: Service) -> dict:
  """Keys before anything else, error bodies in OpenAI's shape, and every
  request counted by endpoint and status; returns the Guard's arguments."""

  @app.exception_handler(ApiError)
  async def api_error(request, exc: ApiError):
    return error_response(exc)

  @app.exception_handler(Exception)
  async def unexpected(request, exc: Exception):
    return internal_error_response(exc)

  def refuse(path: str, authorization: str | None):
    refusal = svc.access.refusal(path, authorization)
    return error_response(refusal) if refusal else None

  guard = dict(refuse=refuse, count=svc.metrics.request, endpoints=ENDPOINTS)
  app.add_middleware(Guard, **guard)
  return guard


def _add_info_routes(app, svc: Service) -> None:
  from fastapi.responses import Response

  @app.get("/health")
  async def health():
    return svc.health()

  @app.get("/metrics")
  async def metrics():
    return Response(svc.metrics.render(), media_type=CONTENT_TYPE)

  @app.get("/v1/models")
  async def list_models():
    router, created = svc.router, int(time.time())
    prefix, routable = svc.prefix(router), svc.routable(router)
    about = (f"routes each request among {len(routable)} models with upstreams "
             f"({len(router.model_names)} known)")
    if router.costs is not None:
      about += f"; '{prefix}-<w>' routes on P(correct) - w * cost"
    data = [{"id": prefix, "object": "model", "created": created, "owned_by": "irt_jax",
             "description": about}]
    for name in router.model_names:
      data.append({"id": name, "object": "model", "created": created, "owned_by": "irt_jax",
                   "routed": True, "upstream": name in svc.upstreams})
    for name in sorted(set(svc.upstreams) - set(router.model_names)):
      data.append({"id": name, "object": "model", "created": created, "owned_by": "irt_jax",
                   "routed": False, "upstream": True})
    return {"object": "list", "data": data}


def _add_route_route(app, svc: Service) -> None:
  @app.post("/route")
  async def route(request: Request):
    req = parse_route_request(await read_json(request, svc.limits), svc.limits)
    router = svc.router
    start = time.perf_counter()
    logits = await svc.batcher.submit(req["queries"], router.logits)
    try:
      routes = router.route_logits(logits, req["cost_weight"], req["budget"], req["candidates"],
                                   texts=req["queries"])
    except RouterError as e:
      raise ApiError(400, str(e)) from None
    svc.metrics.route_seconds.observe(time.perf_counter() - start)
    return {"router": svc.prefix(router), "models": [r.model for r in routes],
            "model_names": list(router.model_names),
            "p_correct": numerics.sigmoid(logits).tolist(),
            "expected_cost": [r.expected_cost for r in routes],
            "runner_up": [r.runner_up for r in routes]}


def _add_feedback_and_admin(app, svc: Service) -> None:
  @app.post("/v1/feedback")
  async def feedback(request: Request):
    if not svc.store.keeps_feedback:
      raise ApiError(404, "feedback is off: start the service with --feedback_log=FILE or "
                          "--store=postgresql://...", code="feedback_off")
    body = await read_json(request, svc.limits)
    record = parse_feedback(body, svc.ids, svc.router.model_names, svc.limits)
    try:
      await asyncio.to_thread(svc.store.append_feedback, record)
    except StoreError as e:
      raise ApiError(503, f"feedback not logged: {e}", "server_error", "store_down") from None
    svc.metrics.feedback.labels(record["model"]).inc()
    return {"object": "feedback", "logged": True, "id": record["id"], "query": record["query"],
            "model": record["model"], "correct": record["correct"]}

  @app.post("/admin/reload")
  async def reload(request: Request):
    raw = await request.body()
    try:
      body = json.loads(raw) if raw.strip() else {}
    except ValueError as e:
      raise ApiError(400, f"request body is not valid JSON: {e}") from None
    if not isinstance(body, dict) or set(body) - {"workdir"} or not isinstance(
        body.get("workdir", ""), str):
      raise ApiError(400, 'reload takes an empty body or {"workdir": "<a trained run>"}')
    return await svc.reload(body.get("workdir") or None)
