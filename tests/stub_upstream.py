"""Stub upstreams and an in-thread service for the serving tests (the `stub` fixture
that serves Stub is in tests/serve_fixtures.py)."""

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler

import uvicorn

SLOW_S = 3.0   # the slow stub's delay: well past the tests' upstream timeouts (0.5 s)
DELAY_S = 0.3  # the `delay` stub's: an upstream that answers, but takes its time


class Stub(BaseHTTPRequestHandler):
  """An OpenAI-compatible upstream: answers 'answer from <model>', as JSON or SSE.

  Model ids: `slow` / `stall` sleep SLOW_S, `broken` answers 500, `down503` 503,
  `toomany` 429, `flaky` 503 while Stub.flaky_failures lasts, `cut` streams one
  event and drops the connection, `delay` answers after DELAY_S; streamed only:
  `cut0` sends its 200 headers and a keep-alive comment, then drops the
  connection before any event,
  `stallfirst` sends its headers and then nothing for SLOW_S, `errfirst` sends
  an error object as its first event; every request is recorded.
  """
  received: list = []
  flaky_failures = 0          # the next this many requests for model "flaky" answer 503

  def log_message(self, *args):
    pass

  def do_POST(self):
    body = json.loads(self.rfile.read(int(self.headers["content-length"])))
    Stub.received.append({"path": self.path, "auth": self.headers.get("authorization"),
                          "body": body})
    model = body["model"]
    if model in ("slow", "stall"):
      time.sleep(SLOW_S)
    if model == "delay":
      time.sleep(DELAY_S)
    failing = {"broken": 500, "down503": 503, "toomany": 429}.get(model)
    if model == "flaky" and Stub.flaky_failures > 0:
      Stub.flaky_failures -= 1
      failing = 503
    if failing:
      self._send(failing, b'{"error": "boom"}', "application/json")
      return
    if model == "cut" and body.get("stream"):
      self._cut_stream(model)
      return
    if model in ("cut0", "stallfirst", "errfirst") and body.get("stream"):
      self._fail_first(model)
      return
    text = f"answer from {model}"
    if not body.get("stream"):
      reply = {"id": "c1", "object": "chat.completion", "created": 1, "model": model,
               "choices": [{"index": 0, "finish_reason": "stop",
                            "message": {"role": "assistant", "content": text}}],
               "usage": {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6}}
      self._send(200, json.dumps(reply).encode(), "application/json")
      return
    events = []
    for i, piece in enumerate(text.split(" ")):
      chunk = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": model,
               "choices": [{"index": 0, "delta": {"content": (" " if i else "") + piece},
                            "finish_reason": None}]}
      events.append(f"data: {json.dumps(chunk)}\n\n")
    if (body.get("stream_options") or {}).get("include_usage"):
      events.append("data: " + json.dumps({
          "id": "c1", "object": "chat.completion.chunk", "created": 1, "model": model,
          "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 3,
                                   "total_tokens": 6}}) + "\n\n")
    events.append("data: [DONE]\n\n")
    self._send(200, "".join(events).encode(), "text/event-stream")

  def _cut_stream(self, model):
    """One event, then the connection drops before the promised length is sent."""
    chunk = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": model,
             "choices": [{"index": 0, "delta": {"content": "partial"}, "finish_reason": None}]}
    event = f"data: {json.dumps(chunk)}\n\n".encode()
    self.send_response(200)
    self.send_header("content-type", "text/event-stream")
    self.send_header("content-length", str(len(event) + 1000))
    self.end_headers()
    self.wfile.write(event)
    self.wfile.flush()
    time.sleep(0.2)
    self.close_connection = True

  def _fail_first(self, model):
    """A 200 stream that fails before its first event (or whose first event is an error)."""
    first = ('data: {"error": {"message": "overloaded", "type": "server_error"}}\n\n'
             if model == "errfirst" else ": keep-alive\n\n" if model == "cut0" else "")
    self.send_response(200)
    self.send_header("content-type", "text/event-stream")
    self.send_header("content-length", str(len(first) + 1000))
    self.end_headers()
    self.wfile.write(first.encode())
    self.wfile.flush()
    time.sleep(SLOW_S if model == "stallfirst" else 0.1)
    self.close_connection = True

  def _send(self, status, payload, ctype):
    self.send_response(status)
    self.send_header("content-type", ctype)
    self.send_header("content-length", str(len(payload)))
    self.end_headers()
    self.wfile.write(payload)


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


class Service:
  """create_app under uvicorn in a thread, on a free loopback port."""

  def __init__(self, app):
    self.sock = socket.socket()
    self.sock.bind(("127.0.0.1", 0))
    self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
    self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                   daemon=True)
    self.thread.start()
    for _ in range(600):                       # bounded wait for startup (warm-up included)
      if self.server.started or not self.thread.is_alive():
        break
      time.sleep(0.05)
    assert self.server.started, "the service did not start"

  def close(self):
    self.server.should_exit = True
    self.thread.join(timeout=30)
    self.sock.close()
