"""POST /explain, the page's shell and its keyed state endpoints, and the traffic window
(counter differences over time, checked with a hand-driven clock)."""

import httpx
import numpy as np
import pytest

from irt_jax.serving.metrics import Metrics
from irt_jax.serving.traffic import Traffic

pytest_plugins = ["tests.router_fixtures", "tests.serve_fixtures", "tests.page_fixtures"]

USER = {"authorization": "Bearer sk-page-user-4d1a"}      # tests/page_fixtures.py's keys
ADMIN = {"authorization": "Bearer sk-page-admin-8c2e"}


def test_explain_endpoint_is_the_routers_explanation(page_service):
  url, router = page_service["url"], page_service["router"]
  queries = ["What is 17 * 23?", "Name the capital of Australia."]
  body = {"queries": queries, "cost_weight": 0.3, "candidates": page_service["routable"],
          "neighbours": 2}
  assert httpx.post(url + "/explain", json=body).status_code == 401
  r = httpx.post(url + "/explain", json=body, headers=USER, timeout=60)
  assert r.status_code == 200, r.text
  got = r.json()["explanations"]
  expected = router.explain(queries, 0.3, page_service["routable"], neighbours=2)
  for g, e in zip(got, expected):
    assert (g["choice"]["model"], g["choice"]["runner_up"]) == (e["choice"]["model"],
                                                                e["choice"]["runner_up"])
    assert g["choice"]["margin"] == pytest.approx(e["choice"]["margin"], abs=1e-6)
    np.testing.assert_allclose([m["p_correct"] for m in g["models"]],
                               [m["p_correct"] for m in e["models"]], rtol=1e-6)
    assert [n["query_id"] for n in g["neighbours"]] == [n["query_id"] for n in e["neighbours"]]
    assert len(g["neighbours"]) == 2 and g["item_response"]["b_percentile"] is not None
  # the same choice as /route
  routed = httpx.post(url + "/route", json={"queries": queries, "cost_weight": 0.3,
                                            "candidates": page_service["routable"]},
                      headers=USER).json()
  assert [e["choice"]["model"] for e in got] == routed["models"]


@pytest.mark.parametrize("body, code, words", [
    ({"queries": ["q"], "budget": 1}, "budget", "not budget"),
    ({"queries": ["q"], "neighbours": 1.5}, "neighbours", "whole number"),
    ({"queries": ["q"], "neighbours": 99}, "neighbours", "whole number"),
    ({"queries": ["q"], "candidates": ["nobody"]}, None, "unknown candidate"),
    ({"queries": ["q"], "colour": "red"}, None, "/explain takes"),
])
def test_explain_refuses_bad_input_with_one_clear_error(page_service, body, code, words):
  r = httpx.post(page_service["url"] + "/explain", json=body, headers=USER)
  assert r.status_code == 400 and words in r.json()["error"]["message"]
  assert r.json()["error"]["code"] == code


def test_page_shell_is_open_and_its_data_keyed(page_service):
  url, router = page_service["url"], page_service["router"]
  page = httpx.get(url + "/ui")
  assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
  assert '<script src="/ui/ui.js">' in page.text and "http" not in page.text.lower().replace(
      "http-equiv", "")                                  # nothing fetched from elsewhere
  script = httpx.get(url + "/ui/ui.js")
  assert script.status_code == 200 and "javascript" in script.headers["content-type"]
  assert httpx.get(url + "/ui/ui.css").status_code == 200
  assert httpx.get(url + "/ui/", follow_redirects=True).text == page.text   # typed with a slash
  assert httpx.get(url + "/ui/state").status_code == 401
  state = httpx.get(url + "/ui/state", headers=USER, timeout=60).json()
  assert state["models"] == list(router.model_names) and state["has_costs"]
  assert state["abilities"]["models"] == list(router.model_names)
  assert len(state["abilities"]["strength"]) == len(router.model_names)
  assert state["traffic"]["covers_s"] is not None          # sampled once at start
  assert httpx.get(url + "/admin/state", headers=USER).status_code == 401


def test_admin_state_counts_feedback_and_reloads(page_service):
  url, router = page_service["url"], page_service["router"]
  before = httpx.get(url + "/admin/state", headers=ADMIN).json()
  assert before["spend"] == {"none": "this service keeps no budgets per key"}
  a, b = router.model_names[0], router.model_names[1]
  for model, correct in ((a, 1), (a, 0), (a, 1), (b, 0)):
    r = httpx.post(url + "/v1/feedback", json={"id": f"query {model} {correct}", "model": model,
                                               "correct": correct}, headers=USER)
    assert r.status_code == 200, r.text
  assert httpx.post(url + "/admin/reload", headers=ADMIN, timeout=60).status_code == 200
  after = httpx.get(url + "/admin/state", headers=ADMIN).json()
  grown = after["feedback"]["records"] - before["feedback"]["records"]
  assert grown == 4
  per = after["feedback"]["per_model"]
  old = before["feedback"]["per_model"].get(a, {"correct": 0, "wrong": 0})
  assert per[a]["correct"] - old["correct"] == 2 and per[a]["wrong"] - old["wrong"] == 1
  assert after["reloads"]["count"] == before["reloads"]["count"] + 1
  assert after["reloads"]["last"]["result"] == "ok"
  assert after["reloads"]["last"]["workdir"] == router.workdir


def test_ui_state_counts_chat_answers(page_service):
  url = page_service["url"]
  model = page_service["routable"][1]
  for _ in range(3):
    r = httpx.post(url + "/v1/chat/completions", headers=USER, timeout=30, json={
        "model": model, "messages": [{"role": "user", "content": "hello"}]})
    assert r.status_code == 200, r.text
  rows = {m["model"]: m for m in httpx.get(url + "/ui/state", headers=USER).json()
          ["traffic"]["models"]}
  assert rows[model]["answered"] >= 3 and rows[model]["share"] > 0


def test_traffic_window_is_counters_now_minus_the_oldest_copy_inside_it():
  now, cooling = [0.0], set()
  metrics = Metrics()
  traffic = Traffic(metrics.registry, lambda: set(cooling), keep_s=900, clock=lambda: now[0])
  metrics.routed.labels("a").inc(5)
  traffic.sample()                                   # t=0: a=5
  now[0] = 100.0
  metrics.routed.labels("a").inc(2)
  metrics.routed.labels("b").inc(6)
  metrics.fallback("b")
  metrics.upstream_error("b", "timeout")
  metrics.upstream_error("b", "status_503")
  cooling.add("b")
  traffic.sample()                                   # t=100: a=7, b=6, b cooling
  cooling.clear()
  now[0] = 200.0
  metrics.routed.labels("a").inc(1)
  recent = traffic.window(150, ["a", "b", "c"])      # since the copy at t=100
  rows = {r["model"]: r for r in recent["models"]}
  assert recent["covers_s"] == 100.0 and recent["answered"] == 1
  assert rows["a"]["answered"] == 1 and rows["a"]["share"] == 1.0
  assert rows["b"]["answered"] == 0 and rows["b"]["fallbacks"] == 0 and rows["b"]["cooled_down"]
  whole = traffic.window(300, ["a", "b", "c"])       # since the copy at t=0
  rows = {r["model"]: r for r in whole["models"]}
  assert whole["covers_s"] == 200.0 and whole["answered"] == 9
  assert rows["a"]["answered"] == 3 and rows["b"]["answered"] == 6
  assert rows["b"]["share"] == pytest.approx(6 / 9)
  assert rows["b"]["fallbacks"] == 1 and rows["b"]["errors"] == 2
  assert rows["c"] == {"model": "c", "answered": 0, "share": 0.0, "fallbacks": 0, "errors": 0,
                       "cooled_down": False}
  now[0] = 1200.0                                    # both copies are older than keep_s
  traffic.sample()
  assert len(traffic.ring) == 1 and traffic.window(300, ["a"])["answered"] == 0


class FakeStore:
  """A store as the service may hold one: spend per (key id, model), feedback records."""
  keeps_feedback = True

  def __init__(self, spend, feedback=()):
    self.spend, self.feedback, self.reads = spend, list(feedback), 0

  def spend_table(self):
    return dict(self.spend)

  def read_feedback(self):
    self.reads += 1
    return list(self.feedback)


def test_spend_per_key_reads_budgets_from_settings_and_spend_from_the_store():
  import hashlib
  from types import SimpleNamespace
  from prometheus_client import CollectorRegistry, Counter
  from irt_jax.serving.page import spend_per_key
  team, plain = hashlib.sha256(b"sk-a").digest(), hashlib.sha256(b"sk-b").digest()
  keys = SimpleNamespace(settings={team: SimpleNamespace(name="team-a", budget_usd=25.0),
                                   plain: SimpleNamespace(name=None, budget_usd=None)})
  store = FakeStore({(team.hex()[:16], "m1"): 1.5, (team.hex()[:16], "m2"): 0.25,
                     ("feedface00000000", "m1"): 2.0})
  svc = SimpleNamespace(access=SimpleNamespace(keys=keys), store=store, metrics=Metrics())
  assert spend_per_key(svc) == {"keys": {
      "feedface00000000": {"budget_usd": None, "spent_usd": 2.0},
      "team-a": {"budget_usd": 25.0, "spent_usd": 1.75}}}
  # no settings, no store: the counters, else none
  bare = SimpleNamespace(access=SimpleNamespace(keys=None),
                         metrics=SimpleNamespace(registry=CollectorRegistry()))
  assert spend_per_key(bare) == {"none": "this service keeps no budgets per key"}
  Counter("irt_spend_usd", "spend", ["key", "model"], registry=bare.metrics.registry).labels(
      "team-b", "m1").inc(0.5)
  assert spend_per_key(bare) == {"keys": {"team-b": {"budget_usd": None, "spent_usd": 0.5}}}


def test_feedback_counts_from_a_store_are_recounted_when_feedback_was_logged():
  from types import SimpleNamespace
  from irt_jax.serving.page import FeedbackCounts
  store = FakeStore({}, [{"model": "a", "correct": 1}, {"model": "a", "correct": 0},
                         {"model": "b", "correct": 1}])
  counts = FeedbackCounts(every_s=3600)
  svc = SimpleNamespace(store=store, metrics=Metrics())
  expected = {"records": 3, "per_model": {"a": {"correct": 1, "wrong": 1},
                                          "b": {"correct": 1, "wrong": 0}}}
  assert counts.read(svc) == expected
  store.feedback.append({"model": "b", "correct": 0})
  assert counts.read(svc) == expected and store.reads == 1      # within the interval
  svc.metrics.feedback.labels("b").inc()                         # this process logged one
  assert counts.read(svc)["per_model"]["b"] == {"correct": 1, "wrong": 1}
  store.keeps_feedback = False
  assert "off" in counts.read(svc)
