"""The service as a gateway, through the openai client against stub upstreams: the overhead
header and its histogram (the service's time counted, the upstreams' left out), and streams
that fall back when their upstream fails before the first event."""

import time

import numpy as np
import openai
import pytest

from irt_jax import predictors
from irt_jax.routing.router import Router
from irt_jax.serving import app as serving
from irt_jax.serving import calibrate
from irt_jax.serving import store as store_lib
from irt_jax.serving.keys import KeyFile, key_id
from tests.fake_encoder import HashEncoder
from tests.stub_upstream import DELAY_S, Stub
from tests.test_serve_faults import QUESTION, _chat, _metrics, _ranking, _router, serve

pytest_plugins = ["tests.router_fixtures", "tests.serve_fixtures"]   # run; stub

SERVICE_DELAY_S = 0.2   # a planted slow encoder: time the service itself spends


@pytest.fixture(scope="module")
def predictor(run):
  return predictors.load(run).predictor


class SlowEncoder(HashEncoder):
  """The hash encoder, SERVICE_DELAY_S slower per call once armed (not at warm-up)."""
  armed = False

  def encode(self, texts, batch_size=64, progress=False):
    if SlowEncoder.armed:
      time.sleep(SERVICE_DELAY_S)
    return super().encode(texts, batch_size, progress)


def _overhead(raw) -> float:
  return float(raw.headers[serving.OVERHEAD_HEADER]) / 1e3


def test_overhead_counts_the_service_and_leaves_out_the_upstreams(predictor, stub):
  router = Router.from_predictor(predictor, SlowEncoder(predictor.input_dim))
  with serve(predictor, stub, ["stall", "delay"], router=router) as (client, url, rank, _):
    SlowEncoder.armed = True
    try:
      start = time.perf_counter()
      raw = _chat(client)                 # 0.5 s on the stalled upstream, 0.3 s on the next
      took = time.perf_counter() - start
    finally:
      SlowEncoder.armed = False
    assert raw.parse().model == rank[1] and raw.headers[serving.FAILED_HEADER] == rank[0]
    overhead = _overhead(raw)
    assert took > 0.5 + DELAY_S + SERVICE_DELAY_S
    # The planted encoder delay is in it; the 0.8 s waited on the two upstreams is not.
    assert SERVICE_DELAY_S <= overhead < SERVICE_DELAY_S + 0.25, overhead
    fast = [_overhead(_chat(client)) for _ in range(3)]
    streamed = client.chat.completions.with_raw_response.create(
        model="router-irtnet", stream=True, messages=[{"role": "user", "content": QUESTION}])
    fast.append(_overhead(streamed))
    assert all(0 < x < 0.25 for x in fast), fast          # no encoder delay, 0.3 s upstream
    chunks = list(streamed.parse())
    assert "".join(c.choices[0].delta.content for c in chunks) == "answer from delay"
    assert {c.model for c in chunks} == {rank[1]}
    # An error reply is proxied too: it carries the header (here a pass-through model's 503).
    with pytest.raises(openai.APIStatusError) as e:
      client.chat.completions.create(model=rank[0], messages=[{"role": "user", "content": "x"}])
    assert float(e.value.response.headers[serving.OVERHEAD_HEADER]) >= 0
    counted = _metrics(url)
    assert counted[("irt_overhead_seconds_count", ())] == 6
    assert counted[("irt_overhead_seconds_sum", ())] == pytest.approx(
        overhead + sum(fast) + float(e.value.response.headers[serving.OVERHEAD_HEADER]) / 1e3,
        abs=6e-6)
    assert counted[("irt_overhead_seconds_bucket", (("le", "0.1"),))] >= 4
    assert counted[("irt_overhead_seconds_bucket", (("le", "0.1"),))] <= 5
    # Endpoints that proxy nothing carry no overhead header.
    import httpx
    assert serving.OVERHEAD_HEADER not in httpx.get(url + "/health").headers


def test_streams_fall_back_when_the_upstream_fails_before_the_first_event(predictor, stub):
  # Dropped after a keep-alive comment, silent past the timeout, an error as the first
  # event: nothing reached the client, so each moves on to the next ranked model.
  behaviours = ["cut0", "stallfirst", "errfirst", "ok"]
  with serve(predictor, stub, behaviours, fallbacks=serving.Fallbacks(fallbacks=3)) as (
      client, url, rank, _):
    Stub.received.clear()
    raw = client.chat.completions.with_raw_response.create(
        model="router-irtnet", stream=True, messages=[{"role": "user", "content": QUESTION}])
    assert raw.headers[serving.FAILED_HEADER] == ",".join(rank[:3])
    assert raw.headers[serving.ROUTED_HEADER] == rank[3]
    chunks = list(raw.parse())
    assert "".join(c.choices[0].delta.content for c in chunks) == f"answer from {rank[3]}"
    assert {c.model for c in chunks} == {rank[3]}
    assert [r["body"]["model"] for r in Stub.received] == behaviours[:3] + [rank[3]]
    counted = _metrics(url)
    for model, reason in zip(rank, ("broke_off", "timeout", "stream_error")):
      assert counted[("irt_upstream_errors_total", (("model", model), ("reason", reason)))] == 1
    assert _overhead(raw) < 0.5           # the 0.5 s stall was the upstream's, not ours
    # Not streamed, the same upstreams answer: cut0 and errfirst fail only as streams.
    assert _chat(client).parse().model == rank[0]
  # Every try failing before its first event: one 502 naming each, as for a JSON answer.
  with serve(predictor, stub, ["cut0", "errfirst"], fallbacks=serving.Fallbacks(fallbacks=1)) as (
      client, url, rank, _):
    with pytest.raises(openai.InternalServerError, match="began its stream with an error") as e:
      client.chat.completions.create(model="router-irtnet", stream=True,
                                     messages=[{"role": "user", "content": QUESTION}])
    assert e.value.status_code == 502
    assert e.value.response.headers[serving.FAILED_HEADER] == f"{rank[0]},{rank[1]}"


def _keys_file(path, lines):
  path.write_text("".join(f"{line}\n" for line in lines))
  return KeyFile(str(path), check_every_s=0)


def test_budgets_settings_and_spend_per_key(predictor, stub, tmp_path):
  base = _router(predictor)
  rank = _ranking(base)
  # The best-ranked model is dear to route to (cost 100), every answer is priced from usage:
  # 3 + 3 tokens at 1000 USD per million each way = 0.006 USD.
  router = base.with_costs({m: (100.0 if m == rank[0] else 0.0) for m in base.model_names})
  prices = {m: (1000.0, 1000.0) for m in base.model_names}
  keys = _keys_file(tmp_path / "keys.txt", [
      'sk-budget {"name": "team-b", "budget_usd": 0.015}',
      f'sk-narrow {{"models": ["{rank[2]}"]}}',
      'sk-thrifty {"cost_weight": 1.0}',
      "sk-plain"])
  spend_log = str(tmp_path / "spend.jsonl")
  store = store_lib.open_store("file", None, spend_log)
  access = serving.Access(keys=keys)
  with serve(predictor, stub, ["ok"] * 4, router=router, access=access, store=store,
             prices=prices, api_key="sk-budget") as (client, url, _, _):
    for _ in range(3):                     # spent before each: 0, 0.006, 0.012 < 0.015
      assert _chat(client).parse().model == rank[0]
    with pytest.raises(openai.RateLimitError, match="budget of 0.015 USD is spent") as e:
      _chat(client)
    assert e.value.status_code == 429 and e.value.body["code"] == "insufficient_quota"
    # A second service on the same spend log (another worker) refuses the key too.
    other_store = store_lib.open_store("file", None, spend_log)
    with serve(predictor, stub, ["ok"] * 4, router=router, access=access, store=other_store,
               prices=prices, api_key="sk-budget") as (other, other_url, _, _):
      with pytest.raises(openai.RateLimitError):
        _chat(other)
      assert _chat(other.with_options(api_key="sk-plain")).parse().model == rank[0]
    # Allowed models bound the ranking and refuse a pass-through to another model.
    narrow = client.with_options(api_key="sk-narrow")
    assert _chat(narrow).parse().model == rank[2]
    with pytest.raises(openai.PermissionDeniedError, match="not allowed for this key"):
      narrow.chat.completions.create(model=rank[0], messages=[{"role": "user", "content": "x"}])
    # The key's cost weight applies to the plain router name: the dear model loses.
    thrifty = _chat(client.with_options(api_key="sk-thrifty")).parse().model
    assert thrifty != rank[0] and thrifty == router.rank_logits(
        router.logits([QUESTION]), 1.0)[0][0]
    assert _chat(client.with_options(api_key="sk-plain")).parse().model == rank[0]
    counted = _metrics(url, "sk-plain")
    spend = lambda key, model: counted.get(("irt_spend_usd_total", (("key", key),
                                                                     ("model", model))), 0)
    assert spend("team-b", rank[0]) == pytest.approx(0.018)
    plain_id = key_id("sk-plain")
    assert spend(plain_id, rank[0]) == pytest.approx(0.006)
  table = store.spend_table()
  assert table[(key_id("sk-budget"), rank[0])] == pytest.approx(0.018)
  assert table[(plain_id, rank[0])] == pytest.approx(0.012)       # one answer on each service
  assert table[(key_id("sk-narrow"), rank[2])] == pytest.approx(0.006)
  assert not any("sk-" in k for k, _ in table)                     # digests, never keys
  store.close()
  other_store.close()


def test_calibrate_finds_the_smallest_weight_that_meets_the_share():
  # share(w) = 1 - w down to 0: the smallest w with share <= 0.3 is 0.7.
  assert calibrate.calibrate(lambda w: max(0.0, 1.0 - w), 0.3) == pytest.approx(0.7, rel=1e-3)
  assert calibrate.calibrate(lambda w: 0.2, 0.3) == 0.0              # met without costs
  assert calibrate.calibrate(lambda w: 0.5, 0.3) >= calibrate.MAX_WEIGHT   # never met
  assert calibrate.parse_share("router-irtnet@share=0.25", "router-irtnet") == 0.25
  assert calibrate.parse_share("router-irtnet-0.3", "router-irtnet") is None
  with pytest.raises(serving.ApiError, match=r"in \[0, 1\]"):
    calibrate.parse_share("router-irtnet@share=1.5", "router-irtnet")


def test_a_calibrated_router_name_meets_its_share_on_validation_queries(predictor, stub, run):
  base = _router(predictor)
  costs = {m: float(i) for i, m in enumerate(base.model_names)}       # 0, 1, ..., M-1
  router = base.with_costs(costs)
  above = (len(costs) - 1) / 2                                       # the dearer half
  cal = calibrate.Calibration(above, lambda r: calibrate.validation_queries(r, run))
  logits, texts = calibrate.validation_queries(router, run)
  expensive = np.array([costs[m] > above for m in router.model_names])
  with serve(predictor, stub, ["ok"] * len(costs), router=router, calibration=cal) as (
      client, url, rank, _):
    routable = sorted(set(rank) & set(router.model_names))
    share_at = lambda w: calibrate.expensive_share(router, logits, texts, w, expensive,
                                                   [m for m in router.model_names if m in rank])
    assert share_at(0.0) > 0.3                      # without a cost weight, above target
    reply = client.chat.completions.with_raw_response.create(
        model="router-irtnet@share=0.3", messages=[{"role": "user", "content": QUESTION}])
    assert reply.status_code == 200 and routable
    ((_, w),) = [(k, v) for k, v in cal._weights.items() if k[1] == 0.3]
    assert w > 0 and share_at(w) <= 0.3 < share_at(w * 0.99)        # met, and only just
    same = client.chat.completions.create(
        model=f"router-irtnet-{w!r}", messages=[{"role": "user", "content": QUESTION}]).model
    assert reply.parse().model == same
    with pytest.raises(openai.BadRequestError, match=r"share after '@share=' must be"):
      client.chat.completions.create(model="router-irtnet@share=2",
                                     messages=[{"role": "user", "content": QUESTION}])
  with serve(predictor, stub, ["ok"]) as (client, url, rank, _):
    with pytest.raises(openai.BadRequestError, match="calibrated routing is off"):
      client.chat.completions.create(model="router-irtnet@share=0.3",
                                     messages=[{"role": "user", "content": QUESTION}])


def test_a_stream_is_charged_from_its_usage_chunk(predictor, stub, tmp_path):
  router = _router(predictor)
  keys = _keys_file(tmp_path / "keys.txt", ['sk-s {"name": "streamer"}'])
  store = store_lib.open_store("file", None, str(tmp_path / "spend.jsonl"))
  prices = {m: (1000.0, 1000.0) for m in router.model_names}       # 0.006 USD an answer
  with serve(predictor, stub, ["ok"] * 2, router=router, access=serving.Access(keys=keys),
             store=store, prices=prices, api_key="sk-s") as (client, url, rank, _):
    def stream(**kwargs):
      return list(client.chat.completions.create(
          model="router-irtnet", stream=True, messages=[{"role": "user", "content": QUESTION}],
          **kwargs))
    chunks = stream(stream_options={"include_usage": True})
    assert chunks[-1].usage.completion_tokens == 3 and chunks[-1].choices == []
    stream()                                              # no usage chunk: not charged
    # A stream is charged after its last event went out: wait (bounded) for the charge.
    spend = ("irt_spend_usd_total", (("key", "streamer"), ("model", rank[0])))
    for _ in range(100):
      if spend in _metrics(url, "sk-s"):
        break
      time.sleep(0.05)
    assert _metrics(url, "sk-s")[spend] == pytest.approx(0.006)
    assert store.spend_table() == pytest.approx({(key_id("sk-s"), rank[0]): 0.006})
  store.close()


def test_the_balance_rule_by_model_name(predictor, stub):
  from irt_jax.serving.upstream import ROUTED_HEADER
  base = _router(predictor)
  costs = {m: float(i + 1) for i, m in enumerate(base.model_names)}     # 1, 2, ..., M
  router = base.with_costs(costs)
  ask = lambda client, model: client.chat.completions.with_raw_response.create(
      model=model, messages=[{"role": "user", "content": QUESTION}]).headers[ROUTED_HEADER]
  with serve(predictor, stub, ["ok"] * len(costs), router=router) as (client, url, rank, _):
    routable = sorted(set(rank) & set(router.model_names))
    want = lambda a: router.route([QUESTION], rule="balance", alpha=a, candidates=routable)[0].model
    assert ask(client, "router-irtnet@alpha=0") == min(routable, key=costs.get)   # the cheapest
    assert ask(client, "router-irtnet@alpha=1") == ask(client, "router-irtnet")    # plain routing
    picks = {a: ask(client, f"router-irtnet@alpha={a}") for a in (0.3, 0.6, 0.9)}
    assert picks == {a: want(a) for a in picks}
    assert len(set(picks.values()) | {ask(client, "router-irtnet@alpha=0")}) > 1  # alpha matters
    with pytest.raises(openai.BadRequestError, match=r"weight after '@alpha=' must be"):
      ask(client, "router-irtnet@alpha=1.5")
  with serve(predictor, stub, ["ok"]) as (client, url, rank, _):
    with pytest.raises(openai.BadRequestError, match="has no model costs"):
      ask(client, "router-irtnet@alpha=0.5")
