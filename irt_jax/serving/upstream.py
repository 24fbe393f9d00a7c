"""The upstream side: which endpoint serves each model, and forwarding a chat
request to the first model of a ranking whose upstream answers.

A try fails, and the next model of the query's ranking is tried, when the
upstream cannot be reached, is too slow, answers 5xx or 429, or sends a
malformed answer, all before a byte has gone to the client. A streamed
answer is committed once its first data event has arrived (a stream whose
first event is an error object fails over too): a failure after that is
passed on to the client as an error event, never retried (the client has
already shown part of an answer). An upstream's own 4xx other than 429 is the
request's fault and is passed through as it is.

A model whose upstream fails `failures` times in a row is cooled down: it goes
to the back of every ranking for `cooldown_s` seconds (still tried when all
else fails), then gets requests again; one success ends its cool-down.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from irt_jax.errors import UserError
from irt_jax.serving.overhead import Timing, UpstreamClock
from irt_jax.serving.requests import ApiError, error_body

ROUTED_HEADER = "x-irt-jax-routed-model"     # the model that answered
FAILED_HEADER = "x-irt-jax-failed-models"    # the models tried before it, comma-separated
MAX_HEAD_LINES = 64    # comment / blank lines held back before a stream's first data event


@dataclasses.dataclass(frozen=True)
class Upstream:
  """An OpenAI-compatible endpoint serving one model."""
  base_url: str                      # e.g. http://127.0.0.1:8001/v1
  api_key_env: str | None = None     # environment variable holding its API key
  model: str | None = None           # the model id the upstream knows it by

  def api_key(self) -> str | None:
    return os.environ.get(self.api_key_env) if self.api_key_env else None


class UpstreamsError(UserError, ValueError):
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
  return {name: _upstream(name, entry, where, check_env) for name, entry in obj.items()}


def _upstream(name: str, entry, where: str, check_env: bool) -> Upstream:
  fields = {f.name for f in dataclasses.fields(Upstream)}
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
  return upstream


@dataclasses.dataclass(frozen=True)
class Fallbacks:
  """How hard the service tries; serve.py's flags take their defaults from here."""
  fallbacks: int = 2            # further ranked models tried after the first fails
  cooldown_s: float = 30.0      # how long a failing model goes to the back of rankings
  failures: int = 3             # failures in a row that start a cool-down
  deadline_s: float = 120.0     # all tries of one request together


class Cooldowns:
  """Failures in a row per model and the cool-downs they started."""

  def __init__(self, policy: Fallbacks, clock: Callable[[], float] = time.monotonic):
    self.policy, self.clock = policy, clock
    self.failures: dict[str, int] = {}
    self.until: dict[str, float] = {}

  def cooling(self, model: str) -> bool:
    return self.until.get(model, -float("inf")) > self.clock()

  def order(self, ranked: list[str]) -> list[str]:
    """`ranked` with the models cooling down moved to the back (stable)."""
    return ([m for m in ranked if not self.cooling(m)] +
            [m for m in ranked if self.cooling(m)])

  def failed(self, model: str) -> None:
    self.failures[model] = self.failures.get(model, 0) + 1
    if self.failures[model] >= self.policy.failures:
      self.until[model] = self.clock() + self.policy.cooldown_s

  def succeeded(self, model: str) -> None:
    self.failures.pop(model, None)
    self.until.pop(model, None)

  def snapshot(self, models) -> dict:
    now = self.clock()
    return {m: {"state": "cooling_down" if self.cooling(m) else "ok",
                "cooldown_left_s": round(max(self.until.get(m, now) - now, 0.0), 3),
                "consecutive_failures": self.failures.get(m, 0)} for m in models}


class Failure(Exception):
  """One try that failed before anything reached the client."""

  def __init__(self, model: str, reason: str, message: str):
    super().__init__(message)
    self.model, self.reason, self.message = model, reason, message


@dataclasses.dataclass
class Answer:
  """What the first upstream that answered said."""
  model: str                                   # the model that answered
  failed: list[str]                            # the models tried before it
  status: int
  data: Any = None                             # JSON body (not streamed, or an upstream 4xx)
  events: AsyncIterator[str] | None = None     # SSE lines when streamed


class Forwarder:
  """Sends chat requests to upstreams, moving down a ranking when one fails.

  `metrics` is told every failure (`upstream_error`), every move to the next
  model (`fallback`) and the time each answer took (`upstream_time`).
  """

  def __init__(self, upstreams: dict[str, Upstream], timeout_s: float, policy: Fallbacks,
               metrics, transport=None):
    """`transport`: an aiohttp connector to use (default: a TCPConnector of 256)."""
    self.upstreams, self.timeout_s, self.policy = upstreams, timeout_s, policy
    self.metrics, self.transport = metrics, transport
    self.cooldowns = Cooldowns(policy)
    self.client = None

  async def start(self) -> None:
    import aiohttp
    self.client = aiohttp.ClientSession(
        connector=self.transport or aiohttp.TCPConnector(limit=256),
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.timeout_s,
                                      sock_read=self.timeout_s))

  async def close(self) -> None:
    if self.client is not None:
      await self.client.close()

  async def send(self, body: dict, plan: list[str], stream: bool, completion_id: str,
                 timing: Timing | None = None) -> Answer:
    """The first answer of the models in `plan` (tried in order, within the
    deadline), or an ApiError (502, or 504 when the last try timed out) naming
    every failure, with the failed models in FAILED_HEADER. The time spent
    waiting on upstreams is added to `timing` (the overhead header's)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + self.policy.deadline_s
    failures: list[Failure] = []
    for model in plan:
      left = deadline - loop.time()
      if left <= 0:
        break
      if failures:
        self.metrics.fallback(failures[-1].model)
      try:
        answer = await asyncio.wait_for(self._try(body, model, stream, completion_id, timing),
                                        left)
      except (Failure, TimeoutError) as e:
        failure = e if isinstance(e, Failure) else Failure(
            model, "deadline", f"the request's deadline of {self.policy.deadline_s:g} s passed "
                               f"while waiting for {model!r}")
        failures.append(failure)
        self.cooldowns.failed(model)
        self.metrics.upstream_error(model, failure.reason)
        continue
      self.cooldowns.succeeded(model)
      answer.failed = [f.model for f in failures]
      return answer
    raise _all_failed(failures)

  async def _try(self, body: dict, model: str, stream: bool, completion_id: str,
                 timing: Timing | None = None) -> Answer:
    upstream = self.upstreams[model]
    url = upstream.base_url + "/chat/completions"
    headers = {"content-type": "application/json"}
    key = upstream.api_key()
    if key:
      headers["authorization"] = f"Bearer {key}"
    start = time.perf_counter()
    data = json.dumps(dict(body, model=upstream.model or model)).encode()
    with UpstreamClock(timing):
      answer = await self._exchange(url, data, headers, model, stream, completion_id)
    self.metrics.upstream_time(model, time.perf_counter() - start)
    return answer

  async def _exchange(self, url: str, data: bytes, headers: dict, model: str, stream: bool,
                      completion_id: str) -> Answer:
    """One upstream call: its whole answer, or a stream's first event."""
    import aiohttp
    try:
      response = await self.client.post(url, data=data, headers=headers)
    except aiohttp.ServerTimeoutError:
      raise Failure(model, "timeout", f"upstream for {model!r} ({url}) did not answer within "
                                      f"{self.timeout_s:g} s") from None
    except aiohttp.ClientError as e:
      raise Failure(model, "unreachable", f"upstream for {model!r} ({url}) is unreachable: "
                                          f"{type(e).__name__}: {e}") from None
    try:
      if stream and response.status == 200:
        return await self._first_event(response, model, url, completion_id)
      return await self._whole(response, model, url, completion_id)
    except BaseException:
      response.close()
      raise

  async def _whole(self, response, model: str, url: str, completion_id: str) -> Answer:
    """A JSON answer read whole: 200 -> the answer, 5xx/429/garbage -> Failure,
    another 4xx -> passed through."""
    import aiohttp
    try:
      raw = await response.read()
    except aiohttp.ServerTimeoutError:
      raise Failure(model, "timeout", f"upstream for {model!r} ({url}) did not finish its answer "
                                      f"within {self.timeout_s:g} s") from None
    except aiohttp.ClientError as e:
      raise Failure(model, "broke_off", f"upstream for {model!r} ({url}) broke off: {e}") from None
    response.release()
    try:
      data = json.loads(raw)
    except ValueError:
      data = None
    status = response.status
    snippet = raw[:300].decode("utf-8", "replace")
    if status >= 500 or status == 429 or (status == 200 and not isinstance(data, dict)):
      raise Failure(model, f"http_{status}" if status != 200 else "malformed",
                    f"upstream for {model!r} answered {status}: {snippet}")
    if status != 200:                  # the request's own fault: passed through
      return Answer(model, [], status, data if data is not None else
                    error_body(snippet, "upstream_error"))
    data["model"], data["id"] = model, completion_id
    return Answer(model, [], 200, data)

  async def _first_event(self, response, model: str, url: str, completion_id: str) -> Answer:
    """A streamed answer, committed once its first data event has arrived
    (comments and blank lines before it are held back with it). A stream
    that ends, stalls or breaks before that event, or whose first event is an
    error object, is a Failure: nothing has reached the client, so the next
    ranked model is tried."""
    import aiohttp
    lines, head = _lines(response), []
    try:
      while not head or not head[-1].startswith("data:"):
        head.append(await anext(lines))
        if len(head) > MAX_HEAD_LINES:
          break
    except StopAsyncIteration:
      raise Failure(model, "malformed", f"upstream for {model!r} ({url}) ended its stream "
                                        f"before the first event") from None
    except aiohttp.ServerTimeoutError:
      raise Failure(model, "timeout", f"upstream for {model!r} ({url}) sent no event within "
                                      f"{self.timeout_s:g} s") from None
    except (aiohttp.ClientError, ValueError) as e:
      raise Failure(model, "broke_off", f"upstream for {model!r} ({url}) broke off: {e}") from None
    error = _error_event(head[-1])
    if error is not None:
      raise Failure(model, "stream_error", f"upstream for {model!r} ({url}) began its stream "
                                           f"with an error: {error[:300]}")
    return Answer(model, [], 200, events=self._events(response, head, lines, model, completion_id))

  async def _events(self, response, head: list[str], lines, model: str, completion_id: str):
    """SSE lines with the service's model name and completion id; a failure
    mid-stream becomes an error event (never a retry: part of an answer is out)."""
    import aiohttp
    try:
      for line in head:
        yield _rewrite(line, model, completion_id)
      async for line in lines:
        yield _rewrite(line, model, completion_id)
      response.release()                  # read to the end: the connection is reused
    except (aiohttp.ClientError, ValueError) as e:
      self.metrics.upstream_error(model, "mid_stream")
      message = (f"upstream for {model!r} timed out mid-stream" if isinstance(
          e, aiohttp.ServerTimeoutError) else f"upstream for {model!r} broke off mid-stream: {e}")
      yield "data: " + json.dumps(error_body(message, "upstream_error", "upstream_mid_stream")) + "\n\n"
    finally:
      response.close()


async def _lines(response):
  """The response body's lines as text, without their line ends."""
  async for raw in response.content:
    yield raw.decode("utf-8", "replace").rstrip("\r\n")


def _error_event(line: str) -> str | None:
  """The error object of an SSE `data:` line that carries one, as text, else None."""
  if not line.startswith("data:"):
    return None
  try:
    chunk = json.loads(line[5:])
  except ValueError:
    return None
  if isinstance(chunk, dict) and "error" in chunk and "choices" not in chunk:
    return json.dumps(chunk["error"])
  return None


def _rewrite(line: str, model: str, completion_id: str) -> str:
  if line.startswith("data:") and line[5:].strip() != "[DONE]":
    try:
      chunk = json.loads(line[5:])
    except ValueError:
      chunk = None
    if isinstance(chunk, dict):
      chunk.update({k: v for k, v in (("model", model), ("id", completion_id)) if k in chunk})
      line = "data: " + json.dumps(chunk)
  return line + "\n"


def _all_failed(failures: list[Failure]) -> ApiError:
  headers = {FAILED_HEADER: ",".join(f.model for f in failures)}
  if not failures:
    return ApiError(504, "the request's deadline passed before any upstream was tried",
                    "upstream_error", "upstream_timeout", headers)
  last = failures[-1]
  timed_out = last.reason in ("timeout", "deadline")
  message = (last.message if len(failures) == 1 else
             f"all {len(failures)} models tried failed: " + "; ".join(f.message for f in failures))
  code = ("upstream_timeout" if timed_out else
          "upstream_unreachable" if last.reason == "unreachable" else "upstream_error")
  return ApiError(504 if timed_out else 502, message, "upstream_error", code, headers)
