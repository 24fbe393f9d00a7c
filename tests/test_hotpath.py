"""The chat endpoint's hot path (serving/hotpath.py) against the FastAPI route it stands in
for: one service under uvicorn, every request sent once through each (the hot path taken
out of `app.hot` for the second), and the replies compared whole: status, every header in
order, the body, and what each request added to /metrics."""

import json

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from irt_jax.routing.router import Router
from irt_jax.serving import app as serving
from irt_jax.serving.keys import KeyFile
from tests.fake_encoder import HashEncoder
from tests.stub_upstream import Service

pytest_plugins = ["tests.serve_fixtures"]   # stub

CHAT = ("POST", "/v1/chat/completions")
MODELS = ("m0", "m1", "m2", "m3")
VARYING = {b"date", b"x-irt-jax-overhead-ms", b"x-irt-jax-completion-id"}


class Linear:
  model_names, input_dim = MODELS, 8

  def logits(self, embeddings):
    w = np.random.default_rng(1).normal(size=(8, len(MODELS)))
    return np.asarray(embeddings, np.float64) @ w


@pytest.fixture(scope="module")
def service(stub, tmp_path_factory):
  keys = tmp_path_factory.mktemp("keys") / "keys.txt"
  keys.write_text('sk-plain\nsk-team {"name": "team", "models": ["m1", "m2"]}\n')
  upstreams = {m: {"base_url": stub} for m in MODELS}
  upstreams["broken-llm"] = {"base_url": stub, "model": "broken"}
  router = Router.from_predictor(Linear(), HashEncoder(8), name="irtnet")
  app = serving.create_app(router, serving.parse_upstreams(upstreams),
                           serving.Limits(max_body_bytes=2000, upstream_timeout_s=5),
                           access=serving.Access(keys=KeyFile(str(keys))),
                           prices={m: (1.0, 2.0) for m in MODELS})
  hot = app.hot[CHAT]
  taken = []

  async def counted(scope, receive, send):
    taken.append(scope["path"])
    await hot(scope, receive, send)
  app.hot[CHAT] = counted
  server = Service(app)
  yield {"app": app, "url": server.url, "hot": counted, "taken": taken}
  server.close()


def _counts(url: str) -> dict:
  """Every counter sample and histogram count in /metrics."""
  text = httpx.get(url + "/metrics", headers={"authorization": "Bearer sk-plain"}).text
  out = {}
  for family in text_string_to_metric_families(text):
    for s in family.samples:
      if not s.name.endswith(("_sum", "_bucket", "_created")):
        out[(s.name, tuple(sorted(s.labels.items())))] = s.value
  return out


def _exchange(service, hot: bool, **request) -> dict:
  """One request's reply with its varying parts masked, and what it added to /metrics."""
  app, url = service["app"], service["url"]
  if hot:
    app.hot[CHAT] = service["hot"]
  else:
    app.hot.pop(CHAT)
  taken = len(service["taken"])
  before = _counts(url)
  try:
    with httpx.Client(timeout=30) as client:
      r = client.request(url=url + "/v1/chat/completions", **request)
      raw = r.read()
  finally:
    app.hot[CHAT] = service["hot"]
  after = _counts(url)
  assert len(service["taken"]) - taken == (1 if hot else 0)
  headers = r.headers.raw
  completion_id = dict(headers).get(b"x-irt-jax-completion-id", b"").decode()
  overhead = dict(headers).get(b"x-irt-jax-overhead-ms")
  assert overhead is None or float(overhead) >= 0
  body = raw.decode().replace(completion_id, "<id>") if completion_id else raw.decode()
  return {"status": r.status_code, "body": body, "has_id": bool(completion_id),
          "headers": [(k, b"~" if k in VARYING else v) for k, v in headers],
          "metrics": {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}}


USER = [{"role": "user", "content": "Which is prime, 21 or 29?"}]
CASES = {
    "routed": dict(method="POST", json={"model": "router-irtnet", "messages": USER},
                   headers={"authorization": "Bearer sk-plain"}),
    "key's models": dict(method="POST", json={"model": "router-irtnet", "messages": USER},
                         headers={"authorization": "Bearer sk-team"}),
    "streamed": dict(method="POST", json={"model": "m3", "messages": USER, "stream": True},
                     headers={"authorization": "Bearer sk-plain"}),
    "upstream fails": dict(method="POST", json={"model": "broken-llm", "messages": USER},
                           headers={"authorization": "Bearer sk-plain"}),
    "not allowed": dict(method="POST", json={"model": "m0", "messages": USER},
                        headers={"authorization": "Bearer sk-team"}),
    "bad json": dict(method="POST", content=b"{nope", headers={"authorization": "Bearer sk-plain"}),
    "bad model": dict(method="POST", json={"model": 7, "messages": USER},
                      headers={"authorization": "Bearer sk-plain"}),
    "unknown model": dict(method="POST", json={"model": "gpt-x", "messages": USER},
                          headers={"authorization": "Bearer sk-plain"}),
    "too large": dict(method="POST", content=b"x" * 3000,
                      headers={"authorization": "Bearer sk-plain"}),
    "no key": dict(method="POST", json={"model": "router-irtnet", "messages": USER}),
    "wrong key": dict(method="POST", json={"model": "router-irtnet", "messages": USER},
                      headers={"authorization": "Bearer sk-nobody"}),
}
STATUS = {"routed": 200, "key's models": 200, "streamed": 200, "upstream fails": 502,
          "not allowed": 403, "bad json": 400, "bad model": 400, "unknown model": 404,
          "too large": 413, "no key": 401, "wrong key": 401}


@pytest.mark.parametrize("case", list(CASES))
def test_the_hot_path_replies_as_the_fastapi_route(service, case):
  hot = _exchange(service, True, **CASES[case])
  cold = _exchange(service, False, **CASES[case])
  assert hot["status"] == STATUS[case], hot["body"]
  assert hot == cold
  assert (b"x-irt-jax-overhead-ms", b"~") in hot["headers"]
  requests = {k: v for k, v in hot["metrics"].items()       # the /metrics scrape counts too
              if k[0] == "irt_requests_total" and ("endpoint", "/metrics") not in k[1]}
  assert requests == {("irt_requests_total", (("endpoint", "/v1/chat/completions"),
                                              ("status", str(STATUS[case])))): 1.0}
  assert hot["metrics"][("irt_overhead_seconds_count", ())] == 1.0
  if STATUS[case] == 200:
    assert hot["has_id"] and any(k[0] == "irt_routed_total" for k in hot["metrics"])
  else:
    assert set(json.loads(hot["body"])) == {"error"}
  if case == "key's models":
    assert json.loads(hot["body"])["model"] in ("m1", "m2")
  if case == "routed":
    assert any(k[0] == "irt_spend_usd_total" for k in hot["metrics"])


def test_an_unexpected_error_is_the_same_500_both_ways(service, monkeypatch):
  async def planted(*args, **kwargs):
    raise RuntimeError("planted")
  monkeypatch.setattr(service["app"].state.service.forwarder, "send", planted)
  request = CASES["routed"]
  hot, cold = _exchange(service, True, **request), _exchange(service, False, **request)
  assert hot == cold
  assert hot["status"] == 500
  assert json.loads(hot["body"])["error"]["message"] == "internal error: RuntimeError: planted"


def test_other_methods_and_paths_go_through_fastapi(service):
  taken = len(service["taken"])
  r = httpx.get(service["url"] + "/v1/chat/completions",
                headers={"authorization": "Bearer sk-plain"})
  assert r.status_code == 405
  r = httpx.get(service["url"] + "/v1/models", headers={"authorization": "Bearer sk-plain"})
  assert r.status_code == 200 and r.json()["object"] == "list"
  assert len(service["taken"]) == taken
