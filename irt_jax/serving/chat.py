"""POST /v1/chat/completions: route (or pass through), forward, answer, charge.

The key's settings (serving/budgets.py) act here: a spent budget is refused
(429) before anything is routed, the key's allowed models bound the ranking
(or refuse a pass-through model, 403), its cost weight is the plain router's,
and the answer's `usage` is charged to the key and the model in the store and
in /metrics (`irt_spend_usd_total`).
"""

from __future__ import annotations

import asyncio
import json

from fastapi import Request
from fastapi.responses import JSONResponse, StreamingResponse

from irt_jax.serving.budgets import (NO_SETTINGS, refuse_if_not_allowed, refuse_if_spent,
                                     usage_cost)
from irt_jax.serving.calibrate import parse_share
from irt_jax.serving.feedback import COMPLETION_HEADER, new_id
from irt_jax.serving.keys import bearer, key_id
from irt_jax.serving.overhead import Timing
from irt_jax.serving.requests import (ApiError, Limits, last_user_text, parse_alpha, read_json,
                                      router_model)
from irt_jax.serving.upstream import FAILED_HEADER, ROUTED_HEADER, Answer

P_HEADER = "x-irt-jax-p-correct"
ANONYMOUS = "anonymous"        # the spend's key name when the service has no keys file


def add_chat_route(app, svc):
  """Registers the endpoint with `app` and returns it (the hot path serves it too)."""
  @app.post("/v1/chat/completions")
  async def chat(request: Request):
    body = await read_json(request, svc.limits)
    if not isinstance(body, dict):
      raise ApiError(400, "request body must be a JSON object (an OpenAI chat request)")
    who, settings = _caller(svc, request)
    if settings.budget_usd is not None:
      refuse_if_spent(settings, await asyncio.to_thread(svc.store.spent, who))
    router = svc.router               # this request's Router to the end, even across a reload
    alpha = parse_alpha(body.get("model"), svc.prefix(router), router.costs is not None)
    weight = 0.0 if alpha is not None else await _weight(svc, router, body.get("model"), settings)
    if body.get("model") == svc.prefix(router) and settings.cost_weight is not None:
      weight = settings.cost_weight   # the key's default cost weight
    p = None
    if weight is not None:
      text = last_user_text(body.get("messages"), svc.limits)
      plan, p = await svc.plan(router, text, weight, settings.models, alpha=alpha)
    elif not isinstance(body.get("messages"), list) or not body["messages"]:
      raise ApiError(400, "'messages' must be a non-empty list", code="messages")
    else:
      refuse_if_not_allowed(settings, body["model"])
      plan, text = [body["model"]], _text_or_none(body["messages"], svc.limits)
    completion_id = new_id()
    answer = await svc.forwarder.send(body, plan, bool(body.get("stream")), completion_id,
                                      Timing.of(request.scope))
    if answer.status == 200 and answer.data is not None:
      await _charge(svc, who, settings, answer.model, answer.data.get("usage"))
    elif answer.events is not None and svc.prices:
      answer.events = _charged(svc, who, settings, answer.model, answer.events)
    return _respond(svc, answer, completion_id, text, p)
  return chat


async def _weight(svc, router, model, settings) -> float | None:
  """The cost weight the model name asks for (None: a pass-through model);
  `<prefix>@share=S` is calibrated on the run's validation queries."""
  share = parse_share(model, svc.prefix(router))
  if share is None:
    return router_model(model, svc.prefix(router), router.costs is not None, list(svc.upstreams))
  if svc.calibration is None:
    raise ApiError(400, f"{model!r}: calibrated routing is off; start the service with "
                        f"--calibrate_above=<cost> (and --costs)", code="model")
  routable = [m for m in svc.routable(router) if settings.models is None or m in settings.models]
  try:
    return await asyncio.to_thread(svc.calibration.weight, router, share, routable)
  except ValueError as e:
    raise ApiError(400, f"{model!r}: {e}", code="model") from None


def _caller(svc, request: Request):
  """(the key's id for spend, its settings); anonymous without a keys file."""
  keys = svc.access.keys
  if keys is None:
    return ANONYMOUS, NO_SETTINGS
  key = bearer(request.headers.get("authorization"))
  return key_id(key), keys.settings_of(key) or NO_SETTINGS


async def _charge(svc, who: str, settings, model: str, usage) -> None:
  """The answer's cost, to the store (all workers see it) and to /metrics."""
  usd = usage_cost(svc.prices, model, usage)
  if usd <= 0:
    return
  await asyncio.to_thread(svc.store.add_spend, who, model, usd, usage)
  svc.metrics.spend_usd.labels(settings.name or who, model).inc(usd)


async def _charged(svc, who: str, settings, model: str, events):
  """A stream's events, passed on; its `usage` chunk (sent when the request asks
  for `stream_options: {"include_usage": true}`) is charged once the stream ends."""
  usage = None
  async for line in events:
    if usage is None and line.startswith("data:") and '"usage"' in line:
      try:
        found = json.loads(line[5:]).get("usage")
      except (ValueError, AttributeError):
        found = None
      usage = found if isinstance(found, dict) else None
    yield line
  if usage is not None:       # the client may hang up after the last event: finish anyway
    task = asyncio.ensure_future(_charge(svc, who, settings, model, usage))
    svc._tasks.add(task)
    task.add_done_callback(svc._tasks.discard)
    await asyncio.shield(task)


def _text_or_none(messages, limits: Limits) -> str | None:
  """A pass-through request's query, remembered for feedback when it has one."""
  try:
    return last_user_text(messages, limits)
  except ApiError:
    return None


def _respond(svc, answer: Answer, completion_id: str, text: str | None, p: dict | None):
  """The upstream's answer with the service's headers: who answered, who failed."""
  headers = {ROUTED_HEADER: answer.model, COMPLETION_HEADER: completion_id}
  if answer.failed:
    headers[FAILED_HEADER] = ",".join(answer.failed)
  if p is not None:
    headers[P_HEADER] = f"{p[answer.model]:.6f}"
  if answer.status == 200:
    svc.metrics.routed.labels(answer.model).inc()
    if text is not None:
      svc.ids.remember(completion_id, text, answer.model)
  if answer.events is not None:
    return StreamingResponse(answer.events, media_type="text/event-stream", headers=headers)
  return JSONResponse(answer.data, status_code=answer.status, headers=headers)
