"""The store (serving/store.py): the JSON-lines files shared by processes, and PostgreSQL
shared by replicas: two service processes taking feedback at once store every record
exactly once, and a replica killed with SIGKILL mid-stream loses none it acknowledged.

IRT_JAX_STORE_RECORDS sets how many feedback records the replica tests send (default
600, to keep CI quick; docs/serving.md gives the 10,000-record run)."""

import asyncio
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

from irt_jax.serving import store as store_lib
from tests.stub_upstream import _free_port

pytest_plugins = ["tests.pg_server"]   # postgres

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECORDS = int(os.environ.get("IRT_JAX_STORE_RECORDS", "600"))


def _record(i: int) -> dict:
  return {"time": 1.5 + i, "id": None, "query": f"question {i} \u00e9", "model": f"m{i % 3}",
          "correct": i % 2}


def _append_many(args):
  path, spend, start, n = args
  store = store_lib.open_store("file", path, spend)
  for i in range(start, start + n):
    store.append_feedback(_record(i))
    store.add_spend("k1", f"m{i % 2}", 0.001)
  store.close()


@pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning")   # the children use no JAX
def test_file_store_is_shared_by_processes(tmp_path):
  path, spend = str(tmp_path / "fb.jsonl"), str(tmp_path / "spend.jsonl")
  with multiprocessing.get_context("fork").Pool(3) as pool:
    pool.map(_append_many, [(path, spend, k * 200, 200) for k in range(3)])
  store = store_lib.open_store(None, path, spend)
  got = store.read_feedback()
  assert sorted(r["query"] for r in got) == sorted(_record(i)["query"] for i in range(600))
  # Spend: 600 charges of 0.001, split 300/300 over two models; another reader agrees.
  table = store.spend_table()
  assert table == pytest.approx({("k1", "m0"): 0.3, ("k1", "m1"): 0.3})
  store.add_spend("k1", "m0", 0.25, {"prompt_tokens": 3, "completion_tokens": 4})
  other = store_lib.open_store("file", path, spend)
  assert other.spent("k1") == pytest.approx(0.85) and store.spent("k1") == pytest.approx(0.85)
  assert other.spent("k2") == 0
  assert json.loads(open(spend).read().splitlines()[-1])["completion_tokens"] == 4
  store.close()
  other.close()


def test_store_errors_are_one_line():
  with pytest.raises(store_lib.StoreError, match="neither 'file' nor a postgresql:// URL"):
    store_lib.open_store("mysql://x")
  port = _free_port()                      # nothing listens there
  with pytest.raises(store_lib.StoreError, match=r"cannot connect") as e:
    store_lib.open_store(f"postgresql://irt:hunter2@127.0.0.1:{port}/db")
  assert "hunter2" not in str(e.value)


def test_postgres_store_round_trip(postgres):
  store = store_lib.open_store(postgres)
  before = len(store.read_feedback())
  for i in range(3):
    store.append_feedback(dict(_record(i), id=f"chatcmpl-irt-{i}"))
  assert store.read_feedback()[before:] == [dict(_record(i), id=f"chatcmpl-irt-{i}")
                                            for i in range(3)]
  assert store_lib.read_feedback_from(postgres)[before:] == store.read_feedback()[before:]
  store.add_spend("round-trip", "m0", 0.5, {"prompt_tokens": 10, "completion_tokens": 20})
  store.add_spend("round-trip", "m0", 0.25)
  store.add_spend("round-trip", "m1", 1.0)
  other = store_lib.open_store(postgres)               # another replica sees the same
  assert other.spent("round-trip") == pytest.approx(1.75)
  assert {k: v for k, v in other.spend_table().items() if k[0] == "round-trip"} == pytest.approx(
      {("round-trip", "m0"): 0.75, ("round-trip", "m1"): 1.0})
  store.close()
  other.close()


def _replica(port: int, spec: str):
  proc = subprocess.Popen([sys.executable, "-m", "tests.store_replica", str(port), spec], cwd=REPO, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
  url = f"http://127.0.0.1:{port}"
  for _ in range(600):
    if proc.poll() is not None:
      raise AssertionError(f"replica exited: {proc.stderr.read()[-2000:]}")
    try:
      if httpx.get(url + "/health", timeout=1).status_code == 200:
        return proc, url
    except httpx.HTTPError:
      pass
    time.sleep(0.1)
  proc.kill()
  raise AssertionError("replica did not start")


async def _send(urls, tag: str, n: int, kill_after: int | None = None, victim=None):
  """n feedback records spread over the replicas, 32 at a time; SIGKILLs `victim`
  once `kill_after` are acknowledged. Returns the acknowledged queries."""
  acked, limit = [], asyncio.Semaphore(32)
  async with httpx.AsyncClient(timeout=30) as client:
    async def one(i):
      query = f"{tag} {i}"
      async with limit:
        try:
          r = await client.post(urls[i % len(urls)] + "/v1/feedback",
                                json={"id": query, "model": "m1", "correct": i % 2})
        except httpx.HTTPError:
          return
      if r.status_code == 200 and r.json()["logged"]:
        acked.append(query)
        if kill_after is not None and len(acked) == kill_after:
          victim.send_signal(signal.SIGKILL)
    await asyncio.gather(*(one(i) for i in range(n)))
  return acked


@pytest.mark.slow
def test_two_replicas_share_one_postgres_log(postgres):
  replicas = [_replica(_free_port(), postgres) for _ in range(2)]
  store = store_lib.open_store(postgres)
  try:
    urls = [url for _, url in replicas]
    start = time.perf_counter()
    acked = asyncio.run(_send(urls, "both", RECORDS))
    took = time.perf_counter() - start
    rows = [r["query"] for r in store.read_feedback() if r["query"].startswith("both ")]
    assert len(acked) == RECORDS
    assert sorted(rows) == sorted(acked)                          # exactly once each
    print(f"\n{RECORDS} records through 2 replicas in {took:.1f} s "
          f"({RECORDS / took:.0f}/s)")
    # SIGKILL one replica a third of the way in: every acknowledged record is stored once.
    victim = replicas[0][0]
    acked = asyncio.run(_send(urls, "kill", RECORDS, kill_after=RECORDS // 3, victim=victim))
    victim.wait(timeout=10)
    assert victim.returncode == -signal.SIGKILL
    rows = [r["query"] for r in store.read_feedback() if r["query"].startswith("kill ")]
    assert len(rows) == len(set(rows))                            # no record twice
    assert set(acked) <= set(rows), sorted(set(acked) - set(rows))[:5]
    assert RECORDS // 3 <= len(acked) < RECORDS                   # the kill cost some requests
    assert len(rows) - len(acked) <= 32       # at most the requests in flight when it died
    print(f"kill -9 after {RECORDS // 3} acknowledged: {len(acked)} acknowledged in all, "
          f"{len(rows)} stored, none twice, none acknowledged missing")
  finally:
    store.close()
    for proc, _ in replicas:
      if proc.poll() is None:
        proc.terminate()
        proc.wait(timeout=30)
