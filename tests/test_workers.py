"""`python -m irt_jax serve --workers=2`: two processes on one port, through the openai
client: /metrics sums both workers, feedback appends from both land whole in one log, a
keys-file change and an /admin/reload reach both, SIGTERM stops them all."""

import asyncio
import json
import os
import signal
import subprocess
import sys
import time

import httpx
import openai
import pytest

from irt_jax.serving.workers import child_args
from tests.stub_upstream import _free_port
from tests.test_serve import _wait_for
from tests.test_serve_faults import _metrics

pytest_plugins = ["tests.router_fixtures", "tests.serve_fixtures"]   # text_run; stub

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_child_args_replace_workers_and_pass_the_socket():
  assert child_args(["--workdir=r", "--workers=4", "--port=9"], 7) == [
      "--workdir=r", "--port=9", "--workers=1", "--socket_fd=7"]


async def _pids(url: str, n: int) -> dict:
  """{pid: /health} of the workers that answered n fresh connections."""
  async def one():
    async with httpx.AsyncClient(timeout=30) as client:      # a new connection each
      return (await client.get(url + "/health")).json()
  return {h["pid"]: h for h in await asyncio.gather(*(one() for _ in range(n)))}


def _every_worker(url: str, predicate, seconds: float = 60) -> dict:
  """/health of both workers once `predicate` holds for each (bounded wait)."""
  seen = {}
  for _ in range(int(seconds * 2)):
    seen.update(asyncio.run(_pids(url, 16)))
    if len(seen) == 2 and all(predicate(h) for h in seen.values()):
      return seen
    seen = {pid: h for pid, h in seen.items() if predicate(h)}
    time.sleep(0.5)
  raise AssertionError(f"not every worker got there: {seen}")


@pytest.mark.slow
def test_two_workers_share_metrics_feedback_keys_and_reloads(text_run, text_router, stub,
                                                             tmp_path):
  workdir, _ = text_run
  upstreams = tmp_path / "upstreams.json"
  upstreams.write_text(json.dumps({n: {"base_url": stub} for n in text_router.model_names}))
  keys, admin = tmp_path / "keys.txt", tmp_path / "admin.txt"
  keys.write_text("sk-one\n")
  admin.write_text("sk-admin\n")
  log = tmp_path / "feedback.jsonl"
  port = _free_port()
  url = f"http://127.0.0.1:{port}"
  proc = subprocess.Popen([sys.executable, "-m", "irt_jax", "serve", f"--workdir={workdir}",
                           f"--port={port}", f"--upstreams={upstreams}", "--log_level=warning",
                           f"--api_keys_file={keys}", f"--admin_keys_file={admin}",
                           f"--feedback_log={log}", "--workers=2"],
                          cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  try:
    _wait_for(lambda: httpx.get(url + "/health", timeout=1).status_code == 200, proc, "start-up")
    first = _every_worker(url, lambda h: h["reloads"] == 0)
    client = openai.OpenAI(base_url=url + "/v1", api_key="sk-one", max_retries=0)
    asyncio.run(_chats_and_feedback(url, f"router-{text_router.name}", 40))
    # Both workers answered; either one's /metrics counts all 40 chats and 40 feedbacks.
    for _ in range(4):
      counted = _metrics(url, "sk-one")
      assert sum(v for (name, _), v in counted.items() if name == "irt_routed_total") == 40
      assert sum(v for (name, _), v in counted.items() if name == "irt_feedback_total") == 40
      assert counted[("irt_overhead_seconds_count", ())] == 40
    lines = log.read_text().splitlines()
    assert sorted(json.loads(line)["query"] for line in lines) == sorted(
        f"worker question {i}" for i in range(40))
    # A new key: every worker takes it (and drops the old one) within about a second.
    keys.write_text("sk-two\n")
    _every_worker(url, lambda h: httpx.get(url + "/v1/models", headers={
        "authorization": "Bearer sk-two"}).status_code == 200)
    time.sleep(1.2)
    for _ in range(8):
      with pytest.raises(openai.AuthenticationError):
        client.with_options(http_client=httpx.Client()).models.list()
    # /admin/reload reaches one worker; the run it names reaches the other too.
    r = httpx.post(url + "/admin/reload", json={"workdir": workdir}, timeout=120,
                   headers={"authorization": "Bearer sk-admin"})
    assert r.status_code == 200, r.text
    after = _every_worker(url, lambda h: h["reloads"] >= 1)
    assert set(after) == set(first)                 # the same two workers, both reloaded
    assert all(h["workdir"] == workdir for h in after.values())
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    for pid in first:                               # the workers are gone too
      with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
  finally:
    if proc.poll() is None:
      proc.kill()
      proc.wait(timeout=30)


async def _chats_and_feedback(url: str, model: str, n: int) -> None:
  """n routed chats, each on a fresh connection, 8 at a time, and feedback on each by its
  completion id on the same connection (the worker that answered knows the id)."""
  limit = asyncio.Semaphore(8)
  headers = {"authorization": "Bearer sk-one"}

  async def one(i):
    question = f"worker question {i}"
    async with limit, httpx.AsyncClient(base_url=url, timeout=60, headers=headers) as client:
      r = await client.post("/v1/chat/completions", json={
          "model": model, "messages": [{"role": "user", "content": question}]})
      assert r.status_code == 200, r.text
      r = await client.post("/v1/feedback", json={"id": r.json()["id"], "correct": i % 2})
      assert r.status_code == 200, r.text
  await asyncio.gather(*(one(i) for i in range(n)))
