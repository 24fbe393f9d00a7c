"""The service's own page and what it reads (added to the app by `add_routes`):

  POST /explain      {"queries": [...], "cost_weight": 0, "candidates": [...], "neighbours": 5}
                     -> {"router", "explanations": [Router.explain's dict per query]}
  GET  /ui           the page (static HTML, script and style from irt_jax/serving/static;
                     no build step, nothing fetched from elsewhere). The page itself holds no
                     data and loads without a key; everything it shows comes from the keyed
                     endpoints here, so a refused key sees only the sign-in box.
  GET  /ui/state     the router, upstreams, traffic over the last minutes, the abilities map
  GET  /admin/state  (admin key) the feedback log's counts, the last reload, spend per key

The traffic figures are differences of the service's own counters (serving/traffic.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.resources
import os
import time

from fastapi import Request

from irt_jax.routing import explain
from irt_jax.routing.router import RouterError
from irt_jax.serving.requests import ApiError, number, parse_route_request, read_json
from irt_jax.serving.traffic import Traffic, counter_values

WINDOW_S = 300.0                 # "the last minutes" of the traffic table
MAX_NEIGHBOURS = 20
STATIC = {"ui.html": "text/html; charset=utf-8", "ui.js": "text/javascript; charset=utf-8",
          "ui.css": "text/css; charset=utf-8"}
PAGE_PATHS = {"/ui", "/ui/", "/ui/ui.js", "/ui/ui.css"}   # the page's shell: open, holds no data
ENDPOINTS = {"/explain", "/ui/state", "/admin/state"} | PAGE_PATHS


def static_file(name: str) -> bytes:
  return importlib.resources.files("irt_jax.serving").joinpath("static", name).read_bytes()


def parse_explain_request(body, limits) -> dict:
  """/route's fields less `budget` (it is shared by a call's queries), plus `neighbours`."""
  if isinstance(body, dict) and "budget" in body:
    raise ApiError(400, "/explain takes cost_weight, not budget (a budget is shared by the "
                        "queries of one /route call)", code="budget")
  if not isinstance(body, dict):
    raise ApiError(400, "request body must be a JSON object with 'queries'")
  body = dict(body)
  k = number(body, "neighbours", float(explain.N_NEIGHBOURS))
  body.pop("neighbours", None)
  if k != int(k) or k > MAX_NEIGHBOURS:
    raise ApiError(400, f"'neighbours' must be a whole number from 0 to {MAX_NEIGHBOURS}",
                   code="neighbours")
  try:
    req = parse_route_request(body, limits)
  except ApiError as e:
    raise ApiError(e.status, e.message.replace("/route takes", "/explain takes"), e.type,
                   e.code) from None
  return {**req, "neighbours": int(k)}


def spend_per_key(svc) -> dict:
  """Spend per key where the service keeps budgets: keys with a budget in the keys
  file's settings and keys with spend in the store (`svc.store.spend_table()`:
  {(key id, model): USD}, a key id being its digest's first 16 hex digits), else
  counters named *spend* with a `key` label; otherwise a note that there are none."""
  rows: dict = {}
  keys = getattr(svc.access, "keys", None)
  for digest, settings in (getattr(keys, "settings", None) or {}).items():
    if getattr(settings, "budget_usd", None) is not None:
      key_id = digest.hex()[:16]
      rows[key_id] = {"name": getattr(settings, "name", None) or key_id,
                      "budget_usd": settings.budget_usd, "spent_usd": 0.0}
  store = getattr(svc, "store", None)
  for (key_id, _), usd in (store.spend_table() if hasattr(store, "spend_table") else {}).items():
    rows.setdefault(key_id, {"name": key_id, "budget_usd": None, "spent_usd": 0.0})
    rows[key_id]["spent_usd"] += usd
  if not rows:
    for (name, labels), value in counter_values(svc.metrics.registry).items():
      labels = dict(labels)
      if "spend" in name and "key" in labels:
        rows.setdefault(labels["key"], {"name": labels["key"], "budget_usd": None,
                                        "spent_usd": 0.0})["spent_usd"] += value
  if rows:
    return {"keys": {row.pop("name"): row for row in sorted(rows.values(),
                                                           key=lambda r: r["name"])}}
  return {"none": "this service keeps no budgets per key"}


class FeedbackCounts:
  """The feedback log's records per model (right, wrong): from the service's store
  (`svc.store.read_feedback()`, recounted when this process logged feedback and at
  least every `every_s`) or its log file (`svc.feedback.path`, re-read only when the
  file changes)."""

  def __init__(self, every_s: float = 15.0):
    self.every_s = every_s
    self._stamp, self._counts = None, None

  def read(self, svc) -> dict:
    store, log = getattr(svc, "store", None), getattr(svc, "feedback", None)
    if store is not None and not getattr(store, "keeps_feedback", True):
      store = None
    if store is None and log is None:
      return {"off": "no feedback log: start the service with --feedback_log=FILE"}
    if store is not None:       # other processes may append too: recount now and then
      own = sum(v for (name, _), v in counter_values(svc.metrics.registry).items()
                if name == "irt_feedback_total")
      stamp, read = (time.monotonic() // self.every_s, own), store.read_feedback
    else:
      from irt_jax.coldstart.feedback import read_feedback
      stat = os.stat(log.path)
      stamp, read = (stat.st_mtime_ns, stat.st_size), lambda: read_feedback(log.path)
    if stamp != self._stamp:
      per_model: dict = {}
      records = read()
      for r in records:
        row = per_model.setdefault(r["model"], {"correct": 0, "wrong": 0})
        row["correct" if r["correct"] else "wrong"] += 1
      self._stamp = stamp
      self._counts = {"records": len(records), "per_model": dict(sorted(per_model.items()))}
    return self._counts


def _add_lifespan_task(app, traffic: Traffic) -> None:
  """Runs the traffic sampler while the app runs, inside the app's own lifespan."""
  inner = app.router.lifespan_context

  @contextlib.asynccontextmanager
  async def lifespan(app_):
    async with inner(app_) as state:
      traffic.start()
      try:
        yield state
      finally:
        await traffic.stop()

  app.router.lifespan_context = lifespan


def add_routes(app, svc) -> None:
  """POST /explain, the page and its state endpoints, and the traffic sampler."""
  from fastapi.responses import Response

  svc.traffic = Traffic(svc.metrics.registry,
                        lambda: {m for m in svc.upstreams if svc.forwarder.cooldowns.cooling(m)})
  _add_lifespan_task(app, svc.traffic)
  feedback_counts = FeedbackCounts()

  @app.post("/explain")
  async def explain_route(request: Request):
    req = parse_explain_request(await read_json(request, svc.limits), svc.limits)
    router = svc.router
    start = time.perf_counter()
    try:
      router.allowed(req["candidates"])
      emb = await svc.batcher.submit(req["queries"], router.embed)
      out = await asyncio.to_thread(router.explain_embeddings, req["queries"], emb,
                                    req["cost_weight"], req["candidates"],
                                    neighbours=req["neighbours"])
    except RouterError as e:
      raise ApiError(400, str(e)) from None
    return {"router": svc.prefix(router), "explanations": out,
            "seconds": round(time.perf_counter() - start, 6)}

  for name, media in STATIC.items():
    path = "/ui" if name == "ui.html" else f"/ui/{name}"
    body = static_file(name)
    app.add_api_route(path, _static(body, media, Response), methods=["GET"],
                      include_in_schema=False)

  @app.get("/ui/state")
  async def ui_state():
    router = svc.router
    explainer = await asyncio.to_thread(router.explainer)
    return {"router": svc.prefix(router), "workdir": router.workdir, "kind": router.name,
            "models": list(router.model_names), "has_costs": router.costs is not None,
            "upstreams": svc.forwarder.cooldowns.snapshot(sorted(svc.upstreams)),
            "traffic": svc.traffic.window(WINDOW_S, list(router.model_names)),
            "abilities": explain.abilities_map(explainer), "time": time.time()}

  @app.get("/admin/state")
  async def admin_state():
    return {"feedback": await asyncio.to_thread(feedback_counts.read, svc),
            "reloads": {"count": svc.reloads, "last": getattr(svc, "last_reload", None)},
            "spend": await asyncio.to_thread(spend_per_key, svc)}


def _static(body: bytes, media: str, response_cls):
  async def serve():
    return response_cls(body, media_type=media, headers={"cache-control": "no-cache"})
  return serve
