"""The service in production, through the openai client against stub upstreams that fail,
stall and recover: fallbacks along the ranking, cool-downs in /health, no retry once a stream
has begun, API and admin keys, /metrics, and a reload under concurrent load."""

import asyncio
import contextlib
import logging
import time

import httpx
import numpy as np
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from irt_jax import predictors
from irt_jax.routing.router import Router
from irt_jax.serving import app as serving
from irt_jax.serving.keys import KeyFile
from tests.fake_encoder import HashEncoder
from tests.stub_upstream import Service, Stub, _free_port

pytest_plugins = ["tests.router_fixtures", "tests.serve_fixtures"]   # run; stub

LIMITS = serving.Limits(upstream_timeout_s=0.5, max_batch_queries=64)
QUESTION = "Which river is the longest?"


@pytest.fixture(scope="module")
def predictor(run):
  return predictors.load(run).predictor


def _router(predictor):
  return Router.from_predictor(predictor, HashEncoder(predictor.input_dim))


def _ranking(router, text=QUESTION):
  return router.rank_logits(router.logits([text]))[0]


@contextlib.contextmanager
def serve(predictor, stub_url, behaviours, **kwargs):
  """The service with the ranking's models mapped to stub behaviours, best first
  (e.g. ["down503", "ok"]: the first-ranked model's upstream answers 503). Yields
  (openai client, base url, ranking, app)."""
  router = kwargs.pop("router", None) or _router(predictor)
  api_key = kwargs.pop("api_key", "unused")
  limits = kwargs.pop("limits", LIMITS)
  ranking = _ranking(router)
  upstreams = {}
  for name, behaviour in zip(ranking, behaviours):
    if behaviour == "unreachable":
      upstreams[name] = {"base_url": f"http://127.0.0.1:{_free_port()}/v1"}
    else:
      upstreams[name] = {"base_url": stub_url, "model": None if behaviour == "ok" else behaviour}
  app = serving.create_app(router, serving.parse_upstreams(upstreams), limits, **kwargs)
  service = Service(app)
  try:
    yield (openai.OpenAI(base_url=service.url + "/v1", api_key=api_key, max_retries=0,
                         timeout=30), service.url, ranking, app)
  finally:
    service.close()


def _metrics(url, key=None) -> dict:
  """{(sample name, sorted labels): value} of /metrics, parsed by prometheus_client."""
  headers = {"authorization": f"Bearer {key}"} if key else {}
  text = httpx.get(url + "/metrics", headers=headers).text
  return {(s.name, tuple(sorted(s.labels.items()))): s.value
          for family in text_string_to_metric_families(text) for s in family.samples}


def _chat(client, **kwargs):
  return client.chat.completions.with_raw_response.create(
      model="router-irtnet", messages=[{"role": "user", "content": QUESTION}], **kwargs)


def test_failing_upstreams_fall_back_along_the_ranking(predictor, stub):
  # The best-ranked model is unreachable, the second answers 429, the third answers.
  with serve(predictor, stub, ["unreachable", "toomany", "ok", "ok"]) as (client, url, rank, _):
    Stub.received.clear()
    raw = _chat(client)
    reply = raw.parse()
    assert reply.model == rank[2] == raw.headers[serving.ROUTED_HEADER]
    assert raw.headers[serving.FAILED_HEADER] == f"{rank[0]},{rank[1]}"
    assert reply.choices[0].message.content == f"answer from {rank[2]}"
    assert [r["body"]["model"] for r in Stub.received] == ["toomany", rank[2]]
    counted = _metrics(url)
    assert counted[("irt_fallbacks_total", (("failed_model", rank[0]),))] == 1
    assert counted[("irt_fallbacks_total", (("failed_model", rank[1]),))] == 1
    assert counted[("irt_upstream_errors_total", (("model", rank[0]), ("reason", "unreachable")))] == 1
    assert counted[("irt_upstream_errors_total", (("model", rank[1]), ("reason", "http_429")))] == 1
    assert counted[("irt_routed_total", (("model", rank[2]),))] == 1
  # With one fallback only, both failures come back as one 502 naming each.
  with serve(predictor, stub, ["down503", "toomany", "ok"],
             fallbacks=serving.Fallbacks(fallbacks=1)) as (client, url, rank, _):
    with pytest.raises(openai.InternalServerError, match="all 2 models tried failed") as e:
      _chat(client)
    assert e.value.status_code == 502 and "answered 503" in str(e.value)
    assert e.value.response.headers[serving.FAILED_HEADER] == f"{rank[0]},{rank[1]}"


def test_a_stalled_upstream_costs_latency_and_the_deadline_bounds_it(predictor, stub):
  with serve(predictor, stub, ["stall", "ok"]) as (client, url, rank, _):
    start = time.perf_counter()
    raw = _chat(client)
    assert raw.parse().model == rank[1] and raw.headers[serving.FAILED_HEADER] == rank[0]
    assert time.perf_counter() - start < 2.5            # the 0.5 s read timeout, not 3 s
    assert _metrics(url)[("irt_upstream_errors_total",
                          (("model", rank[0]), ("reason", "timeout")))] == 1
  # A request's deadline ends all tries: 504 well before the stall (3 s) is over.
  with serve(predictor, stub, ["stall", "stall"],
             fallbacks=serving.Fallbacks(deadline_s=0.3)) as (client, url, rank, _):
    start = time.perf_counter()
    with pytest.raises(openai.APIStatusError, match="deadline of 0.3 s") as e:
      _chat(client)
    assert e.value.status_code == 504 and time.perf_counter() - start < 2.0


def test_a_failing_model_cools_down_and_recovers(predictor, stub):
  policy = serving.Fallbacks(failures=2, cooldown_s=0.6)
  with serve(predictor, stub, ["flaky", "ok"], fallbacks=policy) as (client, url, rank, _):
    Stub.flaky_failures = 2
    for _ in range(2):                                 # two failures in a row: cooled down
      assert _chat(client).headers[serving.FAILED_HEADER] == rank[0]
    health = httpx.get(url + "/health").json()
    assert health["cooling_down"] == [rank[0]]
    assert health["upstreams"][rank[0]]["state"] == "cooling_down"
    assert 0 < health["upstreams"][rank[0]]["cooldown_left_s"] <= 0.6
    Stub.received.clear()
    raw = _chat(client)                                # skipped, not tried: no failure
    assert raw.parse().model == rank[1] and serving.FAILED_HEADER not in raw.headers
    assert [r["body"]["model"] for r in Stub.received] == [rank[1]]
    time.sleep(0.7)                                    # cool-down over; the upstream recovered
    assert _chat(client).parse().model == rank[0]
    health = httpx.get(url + "/health").json()
    assert health["cooling_down"] == [] and health["upstreams"][rank[0]]["state"] == "ok"
    assert health["upstreams"][rank[0]]["consecutive_failures"] == 0


def test_streams_fall_back_before_the_first_byte_and_never_after(predictor, stub):
  with serve(predictor, stub, ["down503", "ok"]) as (client, url, rank, _):
    chunks = list(client.chat.completions.create(
        model="router-irtnet", stream=True, messages=[{"role": "user", "content": QUESTION}]))
    assert "".join(c.choices[0].delta.content for c in chunks) == f"answer from {rank[1]}"
    assert {c.model for c in chunks} == {rank[1]}
  with serve(predictor, stub, ["cut", "ok"]) as (client, url, rank, _):
    Stub.received.clear()
    stream = client.chat.completions.create(
        model="router-irtnet", stream=True, messages=[{"role": "user", "content": QUESTION}])
    first = next(iter(stream))
    assert first.choices[0].delta.content == "partial" and first.model == rank[0]
    with pytest.raises(openai.APIError, match="broke off mid-stream"):
      list(stream)
    assert [r["body"]["model"] for r in Stub.received] == ["cut"]     # never retried
    assert _metrics(url)[("irt_upstream_errors_total",
                          (("model", rank[0]), ("reason", "mid_stream")))] == 1


def _keys(path, *keys):
  path.write_text("# one key per line\n\n" + "".join(f"{k}\n" for k in keys))
  return str(path)


def test_keys_are_required_re_read_on_change_and_never_logged(predictor, stub, tmp_path, caplog):
  secret, other, admin = "sk-alpha-7f3e", "sk-beta-91c2", "sk-admin-55d0"
  keys = KeyFile(_keys(tmp_path / "keys.txt", secret), check_every_s=0)
  access = serving.Access(keys=keys, admin_keys=KeyFile(_keys(tmp_path / "admin.txt", admin)))
  caplog.set_level(logging.DEBUG)
  with serve(predictor, stub, ["ok"], access=access, api_key=secret) as (client, url, rank, _):
    assert _chat(client).parse().model == rank[0]
    for bad in (other, admin):
      with pytest.raises(openai.AuthenticationError, match="missing or invalid API key") as e:
        _chat(client.with_options(api_key=bad))
      assert e.value.body["code"] == "invalid_api_key" and bad not in str(e.value)
    r = httpx.post(url + "/v1/chat/completions", json={"model": "router-irtnet", "messages": [
        {"role": "user", "content": QUESTION}]})                       # no key at all
    assert r.status_code == 401 and set(r.json()) == {"error"}
    r = httpx.get(url + "/v1/models", headers={"authorization": "Basic " + secret})
    assert r.status_code == 401
    assert httpx.get(url + "/health").status_code == 200                # open
    assert httpx.get(url + "/metrics").status_code == 401
    # The file changes: the new key works at once, the removed one no longer does.
    _keys(tmp_path / "keys.txt", other)
    with pytest.raises(openai.AuthenticationError):
      _chat(client)
    assert _chat(client.with_options(api_key=other)).parse().model == rank[0]
    # Admin endpoints take admin keys only.
    r = httpx.post(url + "/admin/reload", headers={"authorization": f"Bearer {other}"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    counted = _metrics(url, other)
    assert counted[("irt_requests_total", (("endpoint", "/v1/chat/completions"),
                                           ("status", "401")))] == 4
    assert counted[("irt_requests_total", (("endpoint", "/admin/reload"), ("status", "401")))] == 1
  logged = caplog.text
  assert all(k not in logged for k in (secret, other, admin)), "a key reached the logs"


def test_admin_endpoints_are_off_without_admin_keys(predictor, stub):
  with serve(predictor, stub, ["ok"]) as (client, url, rank, _):
    r = httpx.post(url + "/admin/reload")
    assert r.status_code == 403 and "--admin_keys_file" in r.json()["error"]["message"]


def test_keys_file_errors(tmp_path):
  with pytest.raises(ValueError, match=r"nowhere.txt: cannot read keys"):
    KeyFile(str(tmp_path / "nowhere.txt"))
  path = tmp_path / "k.txt"
  store = KeyFile(_keys(path, "a1"), check_every_s=0)
  path.unlink()                                      # mid-edit: the keys read before stay
  assert store.valid("a1") and not store.valid("b2") and not store.valid(None)


def test_metrics_count_requests_routes_and_batches(predictor, stub):
  with serve(predictor, stub, ["ok", "ok"]) as (client, url, rank, _):
    for _ in range(3):
      _chat(client)
    httpx.post(url + "/route", json={"queries": ["a", "b"]})
    httpx.post(url + "/route", json={"queries": []})
    httpx.get(url + "/nowhere")
    counted = _metrics(url)
    requests = lambda endpoint, status: counted[
        ("irt_requests_total", (("endpoint", endpoint), ("status", status)))]
    assert requests("/v1/chat/completions", "200") == 3
    assert requests("/route", "200") == 1 and requests("/route", "400") == 1
    assert requests("other", "404") == 1
    assert counted[("irt_routed_total", (("model", rank[0]),))] == 3
    assert counted[("irt_route_seconds_count", ())] == 4          # 3 chats + 1 /route
    assert counted[("irt_upstream_seconds_count", (("model", rank[0]),))] == 3
    # Warm-up (1 query) + 3 chats + one /route of 2 queries, in however many calls.
    assert counted[("irt_encoder_batch_queries_sum", ())] == 1 + 3 + 2
    assert counted[("irt_encoder_batch_queries_count", ())] >= 2


class Reversed:
  """A predictor that ranks the models the other way round: a run that routes otherwise."""

  def __init__(self, predictor):
    self.inner, self.model_names, self.input_dim = predictor, predictor.model_names, predictor.input_dim

  def logits(self, embeddings):
    return -np.asarray(self.inner.logits(embeddings))


def test_reload_under_load_loses_no_request(predictor, stub, tmp_path):
  old = _router(predictor)
  queries = [f"load question {i}" for i in range(40)]
  new = Router.from_predictor(Reversed(predictor), HashEncoder(predictor.input_dim), name="irtnet")
  before = {q: r.model for q, r in zip(queries, old.route(queries))}
  after = {q: r.model for q, r in zip(queries, new.route(queries))}
  assert sum(before[q] != after[q] for q in queries) >= 5, "the new router must route otherwise"
  loads = []

  def reloader(workdir, current):
    loads.append((workdir, current))
    if workdir == "/no/such/run":
      raise FileNotFoundError(workdir)
    time.sleep(0.3)                                   # loading takes a while; requests go on
    return new

  access = serving.Access(admin_keys=KeyFile(_keys(tmp_path / "admin.txt", "adm-1")))
  everyone = ["ok"] * len(predictor.model_names)
  with serve(predictor, stub, everyone, router=old, reloader=reloader, access=access,
             limits=serving.Limits(upstream_timeout_s=30)) as (client, url, rank, app):
    results = asyncio.run(_load_with_reload(url, queries, 400))
    statuses = [r[0] for r in results if r[0] != "reload"]
    assert statuses == [200] * 400, [s for s in statuses if s != 200][:5]
    (reload,) = [r for r in results if r[0] == "reload"]
    assert reload[1] == 200 and reload[2]["reloads"] == 1
    assert loads == [(None, old)]
    routed = [(q, m) for s, m, q in results if s == 200]
    assert all(m in (before[q], after[q]) for q, m in routed)
    assert any(m == before[q] != after[q] for q, m in routed)      # some ran on the old router
    assert any(m == after[q] != before[q] for q, m in routed)      # and some on the new one
    r = httpx.post(url + "/route", json={"queries": queries}).json()
    assert r["models"] == [after[q] for q in queries]              # from now on only the new
    # A reload that fails leaves the Router serving as it was.
    r = httpx.post(url + "/admin/reload", json={"workdir": "/no/such/run"},
                   headers={"authorization": "Bearer adm-1"})
    assert r.status_code == 400 and "reload failed, still serving" in r.json()["error"]["message"]
    assert httpx.post(url + "/route", json={"queries": queries}).json()["models"] == [
        after[q] for q in queries]
    health = httpx.get(url + "/health").json()
    assert health["reloads"] == 1
    counted = _metrics(url)
    assert counted[("irt_reloads_total", (("result", "ok"),))] == 1
    assert counted[("irt_reloads_total", (("result", "failed"),))] == 1


async def _load_with_reload(url, queries, n):
  """n requests (a quarter chats, the rest /route) from 16 concurrent clients, and a
  reload once a quarter of them have been answered. Returns (status, model, query)
  per request, and ("reload", status, body) for the reload."""
  limit, done, half = asyncio.Semaphore(16), [0], asyncio.Event()
  async with httpx.AsyncClient(base_url=url, timeout=60) as client:
    async def one(i):
      q = queries[i % len(queries)]
      async with limit:
        if i % 4 == 0:
          r = await client.post("/v1/chat/completions", json={
              "model": "router-irtnet", "messages": [{"role": "user", "content": q}]})
          model = r.headers.get(serving.ROUTED_HEADER)
        else:
          r = await client.post("/route", json={"queries": [q]})
          model = r.json()["models"][0] if r.status_code == 200 else r.text
      done[0] += 1
      if done[0] == n // 4:
        half.set()
      return r.status_code, model, q

    async def reload():
      await half.wait()
      r = await client.post("/admin/reload", headers={"authorization": "Bearer adm-1"})
      return "reload", r.status_code, r.json()

    return await asyncio.gather(*(one(i) for i in range(n)), reload())
