"""What a request may say, checked: bodies, queries, /route and chat fields.

Every refusal is an ApiError, which the app turns into a JSON body in OpenAI's
shape, {"error": {"message", "type", "param", "code"}}, so OpenAI clients raise
it with its message.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from irt_jax.numerics import non_negative


@dataclasses.dataclass(frozen=True)
class Limits:
  """What one request may ask; serve.py's flags take their defaults from here."""
  max_queries: int = 64              # queries per /route request
  max_query_chars: int = 32_000      # characters per query (or last user message)
  max_body_bytes: int = 1_000_000    # request body size
  upstream_timeout_s: float = 60.0   # per read from an upstream (and its connect)
  max_batch_queries: int = 512       # queries encoded together across concurrent requests


class ApiError(Exception):
  def __init__(self, status: int, message: str, type_: str = "invalid_request_error",
               code: str | None = None, headers: dict | None = None):
    super().__init__(message)
    self.status, self.message, self.type, self.code = status, message, type_, code
    self.headers = headers or {}


def error_body(message: str, type_: str, code: str | None = None) -> dict:
  return {"error": {"message": message, "type": type_, "param": None, "code": code}}


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


def number(body: dict, key: str, default):
  """body[key] as a finite float >= 0 (`numerics.non_negative`), or `default`."""
  value = body.get(key, default)
  if value is None:
    return default
  try:
    return non_negative(value, f"'{key}'")
  except ValueError as e:
    raise ApiError(400, str(e), code=key) from None


def query(text, where: str, limits: Limits) -> str:
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
  queries = [query(q, f"queries[{i}]", limits) for i, q in enumerate(queries)]
  candidates = body.get("candidates")
  if candidates is not None and (not isinstance(candidates, list) or
                                 not all(isinstance(c, str) for c in candidates)):
    raise ApiError(400, "'candidates' must be a list of model names", code="candidates")
  return {"queries": queries, "cost_weight": number(body, "cost_weight", 0.0),
          "candidates": candidates, "budget": number(body, "budget", None)}


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
    return query(content, f"messages[{i}].content", limits)
  raise ApiError(400, "no user message to route on", code="messages")


ALPHA_MARK = "@alpha="


def marked_fraction(model, prefix: str, mark: str, what: str, example: float) -> float | None:
  """X of `<prefix><mark>X` (a number in [0, 1]; else a 400 naming `what`, with
  `example`), None for any other name: the router names `@share=S` and `@alpha=A`."""
  if not isinstance(model, str) or not model.startswith(prefix + mark):
    return None
  try:
    value = float(model[len(prefix) + len(mark):])
  except ValueError:
    value = -1.0
  if not 0 <= value <= 1:
    raise ApiError(400, f"{model!r}: the {what} after '{mark}' must be a number in "
                        f"[0, 1], e.g. {prefix}{mark}{example}", code="model")
  return value


def parse_alpha(model, prefix: str, has_costs: bool) -> float | None:
  """A of `<prefix>@alpha=A` (Avengers-Pro's balance rule, 0 <= A <= 1; needs
  model costs), None for any other name."""
  alpha = marked_fraction(model, prefix, ALPHA_MARK, "weight", 0.7)
  if alpha is not None and not has_costs:
    raise _no_costs(model, prefix)
  return alpha


def _no_costs(model: str, prefix: str) -> ApiError:
  return ApiError(400, f"{model!r}: this service has no model costs, so only {prefix} "
                       f"(cost weight 0) is offered", code="model")


def router_model(model, prefix: str, has_costs: bool, offered: list[str]) -> float | None:
  """The cost weight a model name asks for: 0 for `prefix`, w for `prefix-w`,
  None for another name in `offered` (a plain model passed through)."""
  if not isinstance(model, str) or not model:
    raise ApiError(400, "'model' must be a model or router name", code="model")
  if model in offered:
    return None
  if model == prefix:
    return 0.0
  if model.startswith(prefix + "-"):
    try:
      weight = non_negative(model[len(prefix) + 1:], "cost weight", from_text=True)
    except ValueError:
      raise ApiError(400, f"{model!r}: the cost weight after '{prefix}-' must be a number "
                          f">= 0, e.g. {prefix}-0.3", code="model") from None
    if weight > 0 and not has_costs:
      raise _no_costs(model, prefix)
    return weight
  names = [prefix, f"{prefix}-<cost_weight>", f"{prefix}{ALPHA_MARK}<alpha>"] + sorted(offered)
  raise ApiError(404, f"model {model!r} not found; offered: {', '.join(names)}",
                 code="model_not_found")
