"""The routing service: an OpenAI-compatible front for a Router (FastAPI app factory).

    app = create_app(router, upstreams, Limits())   # served by uvicorn (irt_jax/serve.py)

Endpoints:
  GET  /health
  GET  /v1/models             the routers offered and the LLMs routed among
  POST /route                 {"queries": [...], "cost_weight": 0, "candidates": [...], "budget": x}
  POST /v1/chat/completions   OpenAI chat request; `model` = "router-<kind>" or
                              "router-<kind>-<cost_weight>" routes the last user message and
                              forwards the request to the chosen model's upstream; a model
                              named in the upstreams file passes straight through.

Every error is a JSON body in OpenAI's shape, {"error": {"message", "type", "code"}},
so OpenAI clients raise it with its message: 400 bad input, 404 unknown model,
413 oversized body, 502 upstream down or failing, 504 upstream too slow.

Concurrent requests are micro-batched: requests that arrive while a batch is
being encoded and scored form the next batch (one encoder call for all their
queries, up to `Limits.max_batch_queries`), so a burst costs a few large
encoder calls instead of many small ones, and an idle service adds no wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from fastapi import Request

from irt_jax import numerics
from irt_jax.routing.router import Router, RouterError

ROUTED_HEADER = "x-irt-jax-routed-model"
P_HEADER = "x-irt-jax-p-correct"


@dataclasses.dataclass(frozen=True)
class Limits:
  """What one request may ask; serve.py's flags take their defaults from here."""
  max_queries: int = 64              # queries per /route request
  max_query_chars: int = 32_000      # characters per query (or last user message)
  max_body_bytes: int = 1_000_000    # request body size
  upstream_timeout_s: float = 60.0   # per read from an upstream (and its connect)
  max_batch_queries: int = 512       # queries encoded together across concurrent requests


@dataclasses.dataclass(frozen=True)
class Upstream:
  """An OpenAI-compatible endpoint serving one model."""
  base_url: str                      # e.g. http://127.0.0.1:8001/v1
  api_key_env: str | None = None     # environment variable holding its API key
  model: str | None = None           # the model id the upstream knows it by

  def api_key(self) -> str | None:
    return os.environ.get(self.api_key_env) if self.api_key_env else None


class UpstreamsError(ValueError):
  """An upstreams file that cannot be used."""


def load_upstreams(path: str, check_env: bool = True) -> dict[str, Upstream]:
  """Reads `{"<model>": {"base_url": ..., "api_key_env": ..., "model": ...}}`."""
  try:
    with open(path, encoding="utf-8") as f:
      obj = json.load(f)
  except (OSError, ValueError) as e:
    raise UpstreamsError(f"{path}: cannot read upstreams: {e}") from None
  return parse_upstreams(obj, path, check_env)


def parse_upstreams(obj, where: str = "upstreams", check_env: bool = True) -> dict[str, Upstream]:
  if not isinstance(obj, dict):
    raise UpstreamsError(f"{where}: must be a JSON object model name -> "
                         f'{{"base_url": ..., "api_key_env": ...}}')
  fields = {f.name for f in dataclasses.fields(Upstream)}
  out = {}
  for name, entry in obj.items():
    if not isinstance(entry, dict):
      raise UpstreamsError(f"{where}: {name!r} must map to an object with base_url")
    unknown = sorted(set(entry) - fields)
    if unknown:
      raise UpstreamsError(f"{where}: {name!r} has unknown field(s) {unknown}; fields: "
                           f"{', '.join(sorted(fields))}")
    url = entry.get("base_url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
      raise UpstreamsError(f"{where}: {name!r} needs base_url = http(s)://host[:port]/v1, "
                           f"got {url!r}")
    for key in ("api_key_env", "model"):
      if entry.get(key) is not None and not isinstance(entry[key], str):
        raise UpstreamsError(f"{where}: {name!r}.{key} must be a string")
    upstream = Upstream(base_url=url.rstrip("/"), api_key_env=entry.get("api_key_env"),
                        model=entry.get("model"))
    if check_env and upstream.api_key_env and upstream.api_key_env not in os.environ:
      raise UpstreamsError(f"{where}: {name!r} reads its API key from ${upstream.api_key_env}, "
                           f"which is not set")
    out[name] = upstream
  return out


class ApiError(Exception):
  def __init__(self, status: int, message: str, type_: str = "invalid_request_error",
               code: str | None = None, headers: dict | None = None):
    super().__init__(message)
    self.status, self.message, self.type, self.code = status, message, type_, code
    self.headers = headers or {}


def error_body(message: str, type_: str, code: str | None = None) -> dict:
  return {"error": {"message": message, "type": type_, "param": None, "code": code}}


class Batcher:
  """Joins the queries of concurrent requests into one `fn(texts) -> logits` call.

  One worker task takes everything queued (up to max_rows queries), runs `fn`
  in a thread (the event loop stays free) and hands each request its rows.
  """

  def __init__(self, fn: Callable[[list[str]], np.ndarray], max_rows: int):
    self.fn, self.max_rows = fn, max_rows
    self.queue: asyncio.Queue | None = None
    self.task: asyncio.Task | None = None
    self.batches = 0                  # calls of fn, for the bench and tests
    self.rows = 0

  def start(self) -> None:
    self.queue = asyncio.Queue()
    self.task = asyncio.get_running_loop().create_task(self._run())

  async def stop(self) -> None:
    if self.task is not None:
      self.task.cancel()
      with contextlib.suppress(asyncio.CancelledError):
        await self.task

  async def submit(self, texts: list[str]) -> np.ndarray:
    future = asyncio.get_running_loop().create_future()
    await self.queue.put((texts, future))
    return await future

  async def _run(self) -> None:
    held = None
    while True:
      first = held if held is not None else await self.queue.get()
      held = None
      items, rows = [first], len(first[0])
      while not self.queue.empty():
        item = self.queue.get_nowait()
        if rows + len(item[0]) > self.max_rows:
          held = item
          break
        items.append(item)
        rows += len(item[0])
      items = [(t, f) for t, f in items if not f.done()]   # cancelled by a gone client
      if not items:
        continue
      texts = [t for ts, _ in items for t in ts]
      try:
        logits = await asyncio.to_thread(self.fn, texts)
      except Exception as e:  # noqa: BLE001 - handed to each waiting request
        for _, f in items:
          if not f.done():
            f.set_exception(e)
        continue
      self.batches += 1
      self.rows += len(texts)
      start = 0
      for ts, f in items:
        if not f.done():
          f.set_result(logits[start:start + len(ts)])
        start += len(ts)


# ---------------------------------------------------------------- request checks

async def read_json(request, limits: Limits) -> Any:
  """The body as JSON, refusing more than max_body_bytes before reading it all."""
  length = request.headers.get("content-length")
  if length and length.isdigit() and int(length) > limits.max_body_bytes:
    raise ApiError(413, f"request body of {length} bytes exceeds the limit of "
                        f"{limits.max_body_bytes}", code="body_too_large")
  chunks, size = [], 0
  async for chunk in request.stream():
    size += len(chunk)
    if size > limits.max_body_bytes:
      raise ApiError(413, f"request body exceeds the limit of {limits.max_body_bytes} bytes",
                     code="body_too_large")
    chunks.append(chunk)
  raw = b"".join(chunks)
  if not raw:
    raise ApiError(400, "request body is empty; send a JSON object")

  def no_constants(name):
    raise ValueError(f"{name} is not valid JSON")

  try:
    return json.loads(raw, parse_constant=no_constants)
  except (ValueError, UnicodeDecodeError) as e:
    raise ApiError(400, f"request body is not valid JSON: {e}") from None


def _number(body: dict, key: str, default):
  value = body.get(key, default)
  if value is None:
    return default
  if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
      or value < 0:
    raise ApiError(400, f"'{key}' must be a number >= 0, got {json.dumps(value)}", code=key)
  return float(value)


def _query(text, where: str, limits: Limits) -> str:
  if not isinstance(text, str):
    raise ApiError(400, f"{where} must be a string, got {type(text).__name__}")
  if not text.strip():
    raise ApiError(400, f"{where} is empty")
  if len(text) > limits.max_query_chars:
    raise ApiError(400, f"{where} has {len(text)} characters; the limit is "
                        f"{limits.max_query_chars}", code="query_too_long")
  return text


def parse_route_request(body, limits: Limits) -> dict:
  if not isinstance(body, dict):
    raise ApiError(400, "request body must be a JSON object with 'queries'")
  allowed = {"queries", "cost_weight", "candidates", "budget"}
  unknown = sorted(set(body) - allowed)
  if unknown:
    raise ApiError(400, f"unknown field(s) {unknown}; /route takes {sorted(allowed)}")
  queries = body.get("queries")
  if not isinstance(queries, list) or not queries:
    raise ApiError(400, "'queries' must be a non-empty list of strings", code="queries")
  if len(queries) > limits.max_queries:
    raise ApiError(400, f"{len(queries)} queries in one request; the limit is "
                        f"{limits.max_queries}", code="too_many_queries")
  queries = [_query(q, f"queries[{i}]", limits) for i, q in enumerate(queries)]
  candidates = body.get("candidates")
  if candidates is not None and (not isinstance(candidates, list) or
                                 not all(isinstance(c, str) for c in candidates)):
    raise ApiError(400, "'candidates' must be a list of model names", code="candidates")
  budget = body.get("budget")
  return {"queries": queries, "cost_weight": _number(body, "cost_weight", 0.0),
          "candidates": candidates,
          "budget": None if budget is None else _number(body, "budget", None)}


def last_user_text(messages, limits: Limits) -> str:
  """The text of the last user message (string content or the text parts of a list)."""
  if not isinstance(messages, list) or not messages:
    raise ApiError(400, "'messages' must be a non-empty list", code="messages")
  for i in range(len(messages) - 1, -1, -1):
    message = messages[i]
    if not isinstance(message, dict):
      raise ApiError(400, f"messages[{i}] must be an object with role and content")
    if message.get("role") != "user":
      continue
    content = message.get("content")
    if isinstance(content, list):
      parts = [p.get("text") for p in content
               if isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)]
      content = "\n".join(parts)
    return _query(content, f"messages[{i}].content", limits)
  raise ApiError(400, "no user message to route on", code="messages")


# ---------------------------------------------------------------- the app

def create_app(router: Router, upstreams: dict[str, Upstream] | None = None,
               limits: Limits | None = None, transport=None):
  """The service's FastAPI app. `transport` (an httpx transport) is for tests."""
  import httpx
  from fastapi import FastAPI
  from fastapi.responses import JSONResponse, StreamingResponse

  upstreams = dict(upstreams or {})
  limits = limits or Limits()
  prefix = f"router-{router.name}"
  routable = [m for m in router.model_names if m in upstreams]
  batcher = Batcher(router.logits, limits.max_batch_queries)
  state: dict[str, Any] = {}

  @contextlib.asynccontextmanager
  async def lifespan(app):
    timeout = httpx.Timeout(limits.upstream_timeout_s)
    state["client"] = httpx.AsyncClient(timeout=timeout, transport=transport,
                                        limits=httpx.Limits(max_connections=256))
    batcher.start()
    await batcher.submit(["warm up"])   # loads the encoder (once) and compiles
    try:
      yield
    finally:
      await batcher.stop()
      await state["client"].aclose()

  app = FastAPI(title="irt_jax router", lifespan=lifespan)
  app.state.batcher = batcher

  @app.exception_handler(ApiError)
  async def api_error(request, exc: ApiError):
    return JSONResponse(error_body(exc.message, exc.type, exc.code), status_code=exc.status,
                        headers=exc.headers)

  @app.exception_handler(Exception)
  async def unexpected(request, exc: Exception):
    return JSONResponse(error_body(f"internal error: {type(exc).__name__}: {exc}",
                                   "server_error"), status_code=500)

  def resolve(model) -> tuple[str, float | None]:
    """(target, cost_weight): cost_weight None for a plain pass-through model."""
    if not isinstance(model, str) or not model:
      raise ApiError(400, "'model' must be a model or router name", code="model")
    if model in upstreams:
      return model, None
    if model == prefix:
      return model, 0.0
    if model.startswith(prefix + "-"):
      text = model[len(prefix) + 1:]
      try:
        weight = float(text)
      except ValueError:
        weight = -1.0
      if not math.isfinite(weight) or weight < 0:
        raise ApiError(400, f"{model!r}: the cost weight after '{prefix}-' must be a number "
                            f">= 0, e.g. {prefix}-0.3", code="model")
      if weight > 0 and router.costs is None:
        raise ApiError(400, f"{model!r}: this service has no model costs, so only {prefix} "
                            f"(cost weight 0) is offered", code="model")
      return model, weight
    offered = [prefix, f"{prefix}-<cost_weight>"] + sorted(upstreams)
    raise ApiError(404, f"model {model!r} not found; offered: {', '.join(offered)}",
                   code="model_not_found")

  async def scores(texts: list[str]) -> np.ndarray:
    return await batcher.submit(texts)

  @app.get("/health")
  async def health():
    return {"status": "ok", "router": prefix, "models": len(router.model_names),
            "routable": len(routable), "batches": batcher.batches}

  @app.get("/v1/models")
  async def list_models():
    created = int(time.time())
    data = [{"id": prefix, "object": "model", "created": created, "owned_by": "irt_jax",
             "description": (f"routes each request among {len(routable)} models with upstreams "
                             f"({len(router.model_names)} known); '{prefix}-<w>' routes on "
                             f"P(correct) - w * cost" if router.costs is not None else
                             f"routes each request among {len(routable)} models with upstreams "
                             f"({len(router.model_names)} known)")}]
    for name in router.model_names:
      data.append({"id": name, "object": "model", "created": created, "owned_by": "irt_jax",
                   "routed": True, "upstream": name in upstreams})
    for name in sorted(set(upstreams) - set(router.model_names)):
      data.append({"id": name, "object": "model", "created": created, "owned_by": "irt_jax",
                   "routed": False, "upstream": True})
    return {"object": "list", "data": data}

  @app.post("/route")
  async def route(request: Request):
    req = parse_route_request(await read_json(request, limits), limits)
    logits = await scores(req["queries"])
    try:
      routes = router.route_logits(logits, req["cost_weight"], req["budget"], req["candidates"],
                                   texts=req["queries"])
    except RouterError as e:
      raise ApiError(400, str(e)) from None
    p = numerics.sigmoid(logits)
    return {"router": prefix, "models": [r.model for r in routes],
            "model_names": list(router.model_names),
            "p_correct": p.tolist(),
            "expected_cost": [r.expected_cost for r in routes],
            "runner_up": [r.runner_up for r in routes]}

  @app.post("/v1/chat/completions")
  async def chat(request: Request):
    body = await read_json(request, limits)
    if not isinstance(body, dict):
      raise ApiError(400, "request body must be a JSON object (an OpenAI chat request)")
    target, weight = resolve(body.get("model"))
    headers = {}
    if weight is not None:
      text = last_user_text(body.get("messages"), limits)
      if not routable:
        raise ApiError(503, "no upstream is configured for any model this router chooses "
                            "among; give --upstreams", "server_error", "no_upstream")
      logits = await scores([text])
      try:
        (choice,) = router.route_logits(logits, weight, None, routable, texts=[text])
      except RouterError as e:
        raise ApiError(400, str(e)) from None
      target = choice.model
      headers[P_HEADER] = f"{choice.p_correct:.6f}"
    elif not isinstance(body.get("messages"), list):
      raise ApiError(400, "'messages' must be a non-empty list", code="messages")
    headers[ROUTED_HEADER] = target
    return await forward(body, target, headers, bool(body.get("stream")))

  async def forward(body: dict, target: str, headers: dict, stream: bool):
    upstream = upstreams[target]
    payload = dict(body, model=upstream.model or target)
    out_headers = {"content-type": "application/json"}
    key = upstream.api_key()
    if key:
      out_headers["authorization"] = f"Bearer {key}"
    url = upstream.base_url + "/chat/completions"
    client: httpx.AsyncClient = state["client"]
    try:
      response = await client.send(client.build_request("POST", url, json=payload,
                                                        headers=out_headers), stream=True)
    except httpx.TimeoutException:
      raise ApiError(504, f"upstream for {target!r} ({url}) did not answer within "
                          f"{limits.upstream_timeout_s:g} s", "upstream_error",
                     "upstream_timeout", headers) from None
    except httpx.HTTPError as e:
      raise ApiError(502, f"upstream for {target!r} ({url}) is unreachable: "
                          f"{type(e).__name__}: {e}", "upstream_error", "upstream_unreachable",
                     headers) from None
    if not stream or response.status_code != 200:
      try:
        raw = await response.aread()
      except httpx.TimeoutException:
        raise ApiError(504, f"upstream for {target!r} ({url}) did not finish its answer within "
                            f"{limits.upstream_timeout_s:g} s", "upstream_error",
                       "upstream_timeout", headers) from None
      except httpx.HTTPError as e:
        raise ApiError(502, f"upstream for {target!r} ({url}) broke off: {e}",
                       "upstream_error", "upstream_unreachable", headers) from None
      finally:
        await response.aclose()
      try:
        data = json.loads(raw)
      except ValueError:
        data = None
      if response.status_code >= 500 or (response.status_code == 200 and not isinstance(data, dict)):
        snippet = raw[:300].decode("utf-8", "replace")
        raise ApiError(502, f"upstream for {target!r} answered {response.status_code}: "
                            f"{snippet}", "upstream_error", "upstream_error", headers)
      if response.status_code != 200:   # the upstream's own 4xx, passed through
        return JSONResponse(data if data is not None else error_body(
            raw[:300].decode("utf-8", "replace"), "upstream_error"),
                            status_code=response.status_code, headers=headers)
      data["model"] = target
      return JSONResponse(data, headers=headers)

    async def events():
      try:
        async for line in response.aiter_lines():
          if line.startswith("data:") and line[5:].strip() != "[DONE]":
            try:
              chunk = json.loads(line[5:])
            except ValueError:
              chunk = None
            if isinstance(chunk, dict) and "model" in chunk:
              chunk["model"] = target
              line = "data: " + json.dumps(chunk)
          yield line + "\n"
      except httpx.HTTPError as e:
        message = (f"upstream for {target!r} timed out mid-stream" if isinstance(
            e, httpx.TimeoutException) else f"upstream for {target!r} broke off: {e}")
        yield "data: " + json.dumps(error_body(message, "upstream_error")) + "\n\n"
      finally:
        await response.aclose()

    return StreamingResponse(events(), media_type="text/event-stream", headers=headers)

  return app
