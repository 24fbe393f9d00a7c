"""The routing service end to end: uvicorn on 127.0.0.1, the official openai client, stub
upstreams that record what they received, bad input, and a bounded burst."""

import asyncio
import json
import signal
import subprocess
import sys
import time

import httpx
import numpy as np
import openai
import pytest

from irt_jax import predictors
from irt_jax.serving import app as serving
from irt_jax.routing.router import Router
from tests.conftest import REPO
from tests.fake_encoder import HashEncoder
from tests.stub_upstream import Service, Stub, _free_port

pytest_plugins = ["tests.router_fixtures", "tests.serve_fixtures"]   # run, ...; stub

LIMITS = serving.Limits(max_queries=8, max_query_chars=200, max_body_bytes=4000,
                        upstream_timeout_s=0.5, max_batch_queries=64)


@pytest.fixture(scope="module")
def setup(run, stub, monkeypatch_module):
  predictor = predictors.load(run).predictor
  names = list(predictor.model_names)
  costs = np.linspace(1.0, 0.1, len(names))          # names[-1] is the cheapest
  router = Router.from_predictor(predictor, HashEncoder(predictor.input_dim), costs=costs)
  monkeypatch_module.setenv("STUB_KEY", "sk-test")
  routable = names[:4] + names[-1:]
  upstreams = {n: {"base_url": stub} for n in routable}
  upstreams[names[0]] = {"base_url": stub, "api_key_env": "STUB_KEY", "model": "upstream-id-0"}
  upstreams["external-llm"] = {"base_url": stub}
  upstreams["slow-llm"] = {"base_url": stub, "model": "slow"}
  upstreams["broken-llm"] = {"base_url": stub, "model": "broken"}
  upstreams["down-llm"] = {"base_url": f"http://127.0.0.1:{_free_port()}/v1"}
  app = serving.create_app(router, serving.parse_upstreams(upstreams), LIMITS)
  service = Service(app)
  yield {"router": router, "url": service.url, "routable": routable, "app": app,
         "client": openai.OpenAI(base_url=service.url + "/v1", api_key="unused", max_retries=0,
                                 timeout=30)}
  service.close()


@pytest.fixture(scope="module")
def monkeypatch_module():
  mp = pytest.MonkeyPatch()
  yield mp
  mp.undo()


def _kind(setup):
  return f"router-{setup['router'].name}"


def test_models_and_health(setup):
  ids = [m.id for m in setup["client"].models.list().data]
  assert ids[0] == _kind(setup)
  assert set(setup["router"].model_names) | {"external-llm", "slow-llm"} <= set(ids)
  health = httpx.get(setup["url"] + "/health").json()
  assert health["status"] == "ok" and health["routable"] == len(setup["routable"])


def test_route_endpoint_matches_the_router(setup):
  router = setup["router"]
  queries = ["What is 2 + 2?", "Summarise the French revolution.", "Sort a list in C."]
  r = httpx.post(setup["url"] + "/route", json={"queries": queries}).json()
  assert r["models"] == [x.model for x in router.route(queries)]
  assert r["model_names"] == list(router.model_names)
  np.testing.assert_allclose(r["p_correct"], router.predict(queries), atol=1e-6)
  r = httpx.post(setup["url"] + "/route", json={"queries": queries, "cost_weight": 0.2,
                                                "candidates": setup["routable"]}).json()
  expected = router.route(queries, cost_weight=0.2, candidates=setup["routable"])
  assert r["models"] == [x.model for x in expected]
  assert r["expected_cost"] == pytest.approx([x.expected_cost for x in expected])
  r = httpx.post(setup["url"] + "/route", json={"queries": queries, "budget": 0.3}).json()
  assert np.mean(r["expected_cost"]) <= 0.3
  assert r["models"] == [x.model for x in router.route(queries, budget=0.3)]


def test_chat_completion_is_routed_and_forwarded(setup):
  client, router = setup["client"], setup["router"]
  question = "Which planet has the most moons?"
  expected = router.route([question], candidates=setup["routable"])[0].model
  Stub.received.clear()
  raw = client.chat.completions.with_raw_response.create(
      model=_kind(setup), temperature=0.1,
      messages=[{"role": "system", "content": "Be brief."},
                {"role": "user", "content": "earlier question"},
                {"role": "assistant", "content": "earlier answer"},
                {"role": "user", "content": question}])
  reply = raw.parse()
  assert raw.headers[serving.ROUTED_HEADER] == expected == reply.model
  (got,) = Stub.received
  upstream_id = "upstream-id-0" if expected == router.model_names[0] else expected
  assert reply.choices[0].message.content == f"answer from {upstream_id}"
  assert got["path"] == "/v1/chat/completions" and got["body"]["model"] == upstream_id
  assert got["body"]["messages"][-1]["content"] == question and got["body"]["temperature"] == 0.1
  # A large cost weight sends it to the cheapest routable model (the last name).
  reply = client.chat.completions.create(model=f"{_kind(setup)}-100",
                                         messages=[{"role": "user", "content": question}])
  assert reply.model == router.model_names[-1]
  # The first model's upstream has its own id and API key.
  Stub.received.clear()
  reply = client.chat.completions.create(model=router.model_names[0],
                                         messages=[{"role": "user", "content": "hi"}])
  assert reply.model == router.model_names[0]
  assert Stub.received[0]["body"]["model"] == "upstream-id-0"
  assert Stub.received[0]["auth"] == "Bearer sk-test"


def test_streaming_passes_through(setup):
  client, router = setup["client"], setup["router"]
  question = "Explain recursion with an example."
  expected = router.route([question], candidates=setup["routable"])[0].model
  Stub.received.clear()
  chunks = list(client.chat.completions.create(
      model=_kind(setup), stream=True, messages=[{"role": "user", "content": question}]))
  upstream_id = "upstream-id-0" if expected == router.model_names[0] else expected
  assert "".join(c.choices[0].delta.content for c in chunks) == f"answer from {upstream_id}"
  assert {c.model for c in chunks} == {expected}
  assert Stub.received[0]["body"]["stream"] is True
  # A plain name not in the run passes straight through, streamed too.
  chunks = list(client.chat.completions.create(
      model="external-llm", stream=True, messages=[{"role": "user", "content": "hi"}]))
  assert "".join(c.choices[0].delta.content for c in chunks) == "answer from external-llm"


def _post(setup, path, **kwargs):
  r = httpx.post(setup["url"] + path, timeout=30, **kwargs)
  body = r.json()
  assert set(body) == {"error"} and isinstance(body["error"]["message"], str), body
  return r.status_code, body["error"]["message"]


@pytest.mark.parametrize("content, status, message", [
    (b"{not json", 400, "not valid JSON"),
    (b"", 400, "empty"),
    (b"[1, 2]", 400, "JSON object"),
    (b'{"queries": "one string"}', 400, "non-empty list"),
    (b'{"queries": []}', 400, "non-empty list"),
    (b'{"queries": [""]}', 400, "queries[0] is empty"),
    (b'{"queries": ["ok", 3]}', 400, "queries[1] must be a string"),
    (b'{"queries": ["' + b"x" * 201 + b'"]}', 400, "201 characters; the limit is 200"),
    (json.dumps({"queries": ["q"] * 9}).encode(), 400, "9 queries in one request; the limit is 8"),
    (b'{"queries": ["q"], "cost_weight": "high"}', 400, "'cost_weight' must be a finite number"),
    (b'{"queries": ["q"], "cost_weight": NaN}', 400, "not valid JSON"),
    (b'{"queries": ["q"], "candidates": ["nobody"]}', 400, "unknown candidate model(s) ['nobody']"),
    (b'{"queries": ["q"], "budget": 0.0001}', 400, "below the mean cost of the cheapest routing"),
    (b'{"query": ["q"]}', 400, "unknown field(s) ['query']"),
    (b'{"queries": ["' + b"x" * 5000 + b'"]}', 413, "exceeds the limit of 4000"),
])
def test_bad_route_requests_get_clear_errors(setup, content, status, message):
  got_status, got_message = _post(setup, "/route", content=content,
                                  headers={"content-type": "application/json"})
  assert (got_status, message in got_message) == (status, True), got_message


def test_bad_chat_requests_and_failing_upstreams(setup):
  client, kind = setup["client"], _kind(setup)
  user = [{"role": "user", "content": "hello"}]
  with pytest.raises(openai.NotFoundError, match="model 'gpt-nope' not found; offered: router-"):
    client.chat.completions.create(model="gpt-nope", messages=user)
  with pytest.raises(openai.NotFoundError, match="not found"):
    client.chat.completions.create(model="router-otherkind", messages=user)
  with pytest.raises(openai.BadRequestError, match="cost weight after"):
    client.chat.completions.create(model=f"{kind}-cheap", messages=user)
  with pytest.raises(openai.BadRequestError, match="no user message"):
    client.chat.completions.create(model=kind, messages=[{"role": "system", "content": "x"}])
  with pytest.raises(openai.BadRequestError, match="messages"):
    client.chat.completions.create(model=kind, messages=[])
  with pytest.raises(openai.BadRequestError, match="200"):
    client.chat.completions.create(model=kind, messages=[{"role": "user", "content": "y" * 300}])
  status, message = _post(setup, "/v1/chat/completions", json={"model": 7, "messages": user})
  assert status == 400 and "'model' must be" in message
  # Upstreams that are down, failing or too slow: 502 / 502 / 504, each in bounded time.
  status, message = _post(setup, "/v1/chat/completions", json={"model": "down-llm",
                                                               "messages": user})
  assert status == 502 and "unreachable" in message
  status, message = _post(setup, "/v1/chat/completions", json={"model": "broken-llm",
                                                               "messages": user})
  assert status == 502 and "answered 500" in message
  status, message = _post(setup, "/v1/chat/completions", json={"model": "slow-llm",
                                                               "messages": user})
  assert status == 504 and "did not answer within 0.5 s" in message
  with pytest.raises(openai.APIStatusError, match="did not answer") as e:
    client.chat.completions.create(model="slow-llm", messages=user, stream=True)
  assert e.value.status_code == 504
  # Still serving.
  assert httpx.get(setup["url"] + "/health").json()["status"] == "ok"


def test_burst_of_concurrent_requests(setup):
  router = setup["router"]
  queries = [f"burst question number {i % 40}" for i in range(500)]
  expected = {q: r.model for q, r in zip(queries[:40], router.route(queries[:40]))}

  async def burst():
    limit = asyncio.Semaphore(16)
    async with httpx.AsyncClient(base_url=setup["url"], timeout=60) as client:
      async def one(i):
        async with limit:
          if i % 10 == 0:
            r = await client.post("/v1/chat/completions", json={
                "model": _kind(setup), "messages": [{"role": "user", "content": queries[i]}]})
            return r.status_code, r.headers.get(serving.ROUTED_HEADER), i
          r = await client.post("/route", json={"queries": [queries[i]]})
          return r.status_code, r.json()["models"][0] if r.status_code == 200 else r.text, i
      return await asyncio.gather(*(one(i) for i in range(len(queries))))

  batches = setup["app"].state.batcher.batches
  results = asyncio.run(burst())
  assert [s for s, _, _ in results] == [200] * 500
  for _, model, i in results:
    if i % 10:
      assert model == expected[queries[i]]
    else:
      assert model in setup["routable"]
  assert setup["app"].state.batcher.batches - batches <= 500


def test_batcher_joins_concurrent_requests():
  calls = []

  def fn(texts):
    calls.append(list(texts))
    return np.asarray([[float(t)] for t in texts])

  async def main():
    batcher = serving.Batcher(fn, max_rows=4)
    batcher.start()
    items = [[str(2 * i), str(2 * i + 1)] for i in range(5)]
    out = await asyncio.gather(*(batcher.submit(x) for x in items))
    await batcher.stop()
    return items, out

  items, out = asyncio.run(main())
  for x, logits in zip(items, out):
    np.testing.assert_array_equal(logits[:, 0], [float(t) for t in x])
  # Queued together, cut at 4 rows per call without splitting a request.
  assert [len(c) for c in calls] == [4, 4, 2]


def test_upstreams_file_errors(tmp_path, monkeypatch):
  monkeypatch.delenv("NO_SUCH_KEY_VAR", raising=False)
  path = tmp_path / "up.json"
  for obj, message in [([], "must be a JSON object"),
                       ({"m": {"base_url": "ftp://x"}}, "needs base_url"),
                       ({"m": {"base_url": "http://x", "key": 1}}, "unknown field(s) ['key']"),
                       ({"m": {"base_url": "http://x", "api_key_env": "NO_SUCH_KEY_VAR"}},
                        "$NO_SUCH_KEY_VAR, which is not set")]:
    path.write_text(json.dumps(obj))
    with pytest.raises(serving.UpstreamsError, match=None) as e:
      serving.load_upstreams(str(path))
    assert message in str(e.value) and str(path) in str(e.value)


def _wait_for(predicate, proc, what: str, seconds: float = 120):
  for _ in range(int(seconds * 10)):                # bounded
    try:
      if predicate():
        return
    except httpx.HTTPError:
      pass
    assert proc.poll() is None, proc.stdout.read()
    time.sleep(0.1)
  raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_serve_command_end_to_end(text_run, text_router, stub, tmp_path):
  workdir, _ = text_run
  router = text_router
  upstreams = tmp_path / "upstreams.json"
  upstreams.write_text(json.dumps({n: {"base_url": stub} for n in router.model_names}))
  (tmp_path / "keys.txt").write_text("sk-user-1\n")
  (tmp_path / "admin.txt").write_text("sk-admin-1\n")
  log = tmp_path / "feedback.jsonl"
  port = _free_port()
  url = f"http://127.0.0.1:{port}"
  proc = subprocess.Popen([sys.executable, "-m", "irt_jax", "serve", f"--workdir={workdir}",
                           f"--port={port}", f"--upstreams={upstreams}", "--log_level=warning",
                           f"--api_keys_file={tmp_path / 'keys.txt'}",
                           f"--admin_keys_file={tmp_path / 'admin.txt'}", f"--feedback_log={log}",
                           "--warm_up_tokens=20", f"--compilation_cache_dir={tmp_path / 'xla'}"],
                          cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  try:
    _wait_for(lambda: httpx.get(url + "/health", timeout=1).status_code == 200, proc, "start-up")
    client = openai.OpenAI(base_url=url + "/v1", api_key="sk-user-1", max_retries=0)
    question = "How many legs does a spider have?"
    reply = client.chat.completions.create(model=f"router-{router.name}",
                                           messages=[{"role": "user", "content": question}])
    assert reply.model == router.route([question])[0].model
    assert reply.choices[0].message.content == f"answer from {reply.model}"
    with pytest.raises(openai.AuthenticationError):
      client.with_options(api_key="sk-admin-1").models.list()
    client.post("/feedback", body={"id": reply.id, "correct": 1}, cast_to=object)
    assert [r["query"] for r in map(json.loads, log.read_text().splitlines())] == [question]
    # SIGHUP reloads the run; POST /admin/reload (admin key) reloads it by name.
    proc.send_signal(signal.SIGHUP)
    _wait_for(lambda: httpx.get(url + "/health").json()["reloads"] == 1, proc, "SIGHUP reload")
    r = httpx.post(url + "/admin/reload", json={"workdir": workdir}, timeout=120,
                   headers={"authorization": "Bearer sk-admin-1"})
    assert r.status_code == 200 and r.json()["reloads"] == 2, r.text
    assert client.models.list().data[0].id == f"router-{router.name}"
  finally:
    proc.terminate()
    proc.wait(timeout=30)
  # --warm_up_tokens compiled the short-query shapes before the port opened (buckets 16
  # and 32 at rows 1..64: 14 programs, the one-query warm-up's among them) into the cache.
  assert "compiled 13 encoder programs for queries of up to 20 tokens" in proc.stdout.read()
  assert any((tmp_path / "xla").iterdir())


def test_serve_command_refuses_a_missing_keys_file(text_run, tmp_path):
  done = subprocess.run([sys.executable, "-m", "irt_jax", "serve", f"--workdir={text_run[0]}",
                         f"--api_keys_file={tmp_path / 'none.txt'}"], cwd=REPO,
                        capture_output=True, text=True, timeout=300)
  assert done.returncode != 0 and "none.txt: cannot read keys" in done.stderr
  assert "Traceback" not in done.stderr


def test_serve_encoder_precision_reaches_the_encoder_and_survives_a_reload(text_run):
  # build_app as `irt-jax serve --encoder_precision=bfloat16` runs it (in a
  # subprocess: the tools' flags share absl's global FLAGS), then the reload SIGHUP and
  # POST /admin/reload use: it keeps bfloat16 and shares the encoder already loaded.
  script = ("import sys\n"
            "from absl import flags\n"
            "from irt_jax.cli import serve\n"
            "serve.define_flags()\n"
            "flags.FLAGS(['serve', '--workdir=' + sys.argv[1], '--encoder_precision=bfloat16'])\n"
            "svc = serve.build_app().state.service\n"
            "new = svc.reloader(None, svc.router)\n"
            "print(svc.router.encoder.precision, new.encoder.precision,\n"
            "      new.encoder is svc.router.encoder)\n")
  done = subprocess.run([sys.executable, "-c", script, text_run[0]], cwd=REPO,
                        capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stderr
  assert done.stdout.split()[-3:] == ["bfloat16", "bfloat16", "True"]


@pytest.mark.parametrize("tool", ["serve", "route"])
def test_an_unknown_encoder_precision_is_one_clear_line(tool, text_run):
  extra = ["What is 2 + 2?"] if tool == "route" else []
  done = subprocess.run([sys.executable, "-m", "irt_jax", tool, f"--workdir={text_run[0]}",
                         "--encoder_precision=int8", *extra], cwd=REPO,
                        capture_output=True, text=True, timeout=300)
  assert done.returncode != 0
  assert f"{tool}: encoder_precision must be one of float32, bfloat16, got 'int8'" in done.stderr
  assert "Traceback" not in done.stderr
