"""Multi-process data parallelism on one machine, with the real `train.py`.

Each job is the localhost recipe of docs/distributed.md: N processes joined through a
coordinator on localhost, each seeing a few forced CPU devices, talking through
gloo. One process with 4 devices and 2 processes with 2 devices each must train
the same parameters; a job that loses a process must die within a bounded time
and resume from its last checkpoint when restarted. Every subprocess has a
timeout, so a hang fails the test instead of stalling CI.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from irt_jax import checkpoint as ckpt_lib
from irt_jax import predictors
from tests.conftest import REPO, cpu_test_flags

# The test config (12 models, 480 training queries), identical in every job
# below: 300 cells -> 25 query rows, padded to 28 for 4 devices, so an epoch is
# 18 steps whose last block holds 4 real rows (process 1's share of it is all
# padding); a checkpoint every 10 steps, so some fall mid-epoch; no early stop.
TRAIN_ARGS = ["--config=configs/test.py", "--config.train.num_epochs=3",
              "--config.train.batch_cells=300", "--config.checkpoint.every_steps=10",
              "--config.train.early_stop_patience=100"]
TOTAL_STEPS = 3 * 18
# The job fails this long after a peer stops sending heartbeats.
HEARTBEAT_S = 10
JOB_TIMEOUT_S = 120


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _env(devices_per_process: int) -> dict:
  env = dict(os.environ)
  env["XLA_FLAGS"] = cpu_test_flags(devices_per_process)
  env["JAX_PLATFORMS"] = "cpu"
  env["PYTHONUNBUFFERED"] = "1"
  return env


def _start(workdir: str, num_processes: int, devices_per_process: int,
           tag: str) -> list[tuple[subprocess.Popen, str]]:
  """Starts the job's processes; returns (process, log path) pairs."""
  os.makedirs(workdir, exist_ok=True)
  base = [sys.executable, "train.py", f"--workdir={workdir}", *TRAIN_ARGS]
  if num_processes > 1:
    port = _free_port()
    base += [f"--coordinator_address=localhost:{port}", f"--num_processes={num_processes}",
             f"--heartbeat_timeout={HEARTBEAT_S}", "--initialization_timeout=60",
             "--shutdown_timeout=30"]
  procs = []
  for i in range(num_processes):
    cmd = base + ([f"--process_id={i}"] if num_processes > 1 else [])
    log = os.path.join(workdir, f"{tag}.process{i}.log")
    with open(log, "w") as f:
      procs.append((subprocess.Popen(cmd, cwd=REPO, env=_env(devices_per_process),
                                     stdout=f, stderr=subprocess.STDOUT), log))
  return procs


def _tail(log: str, n: int = 30) -> str:
  with open(log, errors="replace") as f:
    return "".join(f.readlines()[-n:])


def _kill_all(procs) -> None:
  for p, _ in procs:
    if p.poll() is None:
      p.kill()
      p.wait()


def _finish(procs, timeout: float = JOB_TIMEOUT_S) -> None:
  """Waits for every process; fails (after killing the rest) on error or timeout."""
  deadline = time.monotonic() + timeout
  try:
    for p, log in procs:
      try:
        rc = p.wait(timeout=max(1.0, deadline - time.monotonic()))
      except subprocess.TimeoutExpired:
        pytest.fail(f"job still running after {timeout}s; {log}:\n{_tail(log)}")
      assert rc == 0, f"exit status {rc}; {log}:\n{_tail(log)}"
  finally:
    _kill_all(procs)


def _params(workdir: str) -> tuple[int, dict]:
  run = predictors.load(workdir, "latest")
  return run.step, run.predictor.params


def _assert_same_params(a: dict, b: dict) -> None:
  for (path, x), (_, y) in zip(jax.tree_util.tree_leaves_with_path(a),
                               jax.tree_util.tree_leaves_with_path(b)):
    np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6,
                               err_msg=jax.tree_util.keystr(path))
  assert jax.tree.structure(a) == jax.tree.structure(b)


@pytest.fixture(scope="module")
def reference_runs(tmp_path_factory):
  """The same training as 1 process x 4 devices and as 2 processes x 2 devices."""
  root = tmp_path_factory.mktemp("multihost")
  single, multi = str(root / "one_process"), str(root / "two_processes")
  _finish(_start(single, 1, 4, "run"))
  _finish(_start(multi, 2, 2, "run"))
  return single, multi


@pytest.mark.slow
def test_two_processes_train_the_same_parameters_as_one(reference_runs):
  single, multi = reference_runs
  step_1, params_1 = _params(single)
  step_2, params_2 = _params(multi)  # restored here, in one process
  assert step_1 == step_2 == TOTAL_STEPS
  _assert_same_params(params_1, params_2)
  # Only process 0 logs progress and writes metrics.
  with open(os.path.join(multi, "run.process0.log")) as f:
    log0 = f.read()
  with open(os.path.join(multi, "run.process1.log")) as f:
    log1 = f.read()
  assert "4 devices (2 processes); blocks of 28 rows" in log0 and "epoch 3/3" in log0
  assert "epoch 3/3" not in log1
  with open(os.path.join(multi, "metrics.jsonl")) as f:
    assert len(f.readlines()) == 3
  # The restored run predicts as a single-process run would.
  run = predictors.load(multi, "latest")
  p = run.predictor.proba(np.zeros((2, run.predictor.spec.input_dim), np.float32))
  assert p.shape == (2, 12) and np.isfinite(p).all()


@pytest.mark.slow
def test_a_lost_process_fails_the_job_and_a_restart_resumes(reference_runs, tmp_path):
  _, multi = reference_runs
  workdir = str(tmp_path / "killed")
  procs = _start(workdir, 2, 2, "first")
  try:
    first_ckpt = os.path.join(workdir, "checkpoints", "10")
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while not os.path.isdir(first_ckpt):
      for p, log in procs:
        assert p.poll() is None, f"exited early ({p.returncode}):\n{_tail(log)}"
      assert time.monotonic() < deadline, f"no checkpoint in time:\n{_tail(procs[0][1])}"
      time.sleep(0.2)
    procs[1][0].kill()  # SIGKILL process 1 mid-run
    t0 = time.monotonic()
    survivor, log = procs[0]
    try:
      rc = survivor.wait(timeout=6 * HEARTBEAT_S)
    except subprocess.TimeoutExpired:
      pytest.fail(f"survivor still running {6 * HEARTBEAT_S}s after its peer died:\n"
                  f"{_tail(log)}")
    waited = time.monotonic() - t0
  finally:
    _kill_all(procs)
  assert rc != 0, f"survivor exited cleanly after losing its peer:\n{_tail(log)}"
  assert waited < 6 * HEARTBEAT_S

  resume_step = ckpt_lib.Checkpoints(workdir, read_only=True).latest_step()
  assert resume_step is not None and 10 <= resume_step < TOTAL_STEPS
  procs = _start(workdir, 2, 2, "restart")
  _finish(procs)
  with open(procs[0][1]) as f:
    assert f"Resumed from step {resume_step} " in f.read()
  step, params = _params(workdir)
  assert step == TOTAL_STEPS
  _assert_same_params(params, _params(multi)[1])


@pytest.mark.slow
def test_sigterm_checkpoints_at_an_agreed_step_and_a_rerun_ends_as_if_uninterrupted(
    reference_runs, tmp_path):
  workdir = str(tmp_path / "preempted")
  procs = _start(workdir, 2, 2, "first")
  try:
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while not os.path.isdir(os.path.join(workdir, "checkpoints", "10")):
      for p, log in procs:
        assert p.poll() is None, f"exited early ({p.returncode}):\n{_tail(log)}"
      assert time.monotonic() < deadline, f"no checkpoint in time:\n{_tail(procs[0][1])}"
      time.sleep(0.2)
    procs[1][0].terminate()  # SIGTERM to process 1 only, as a scheduler's preemption
    codes = [p.wait(timeout=6 * HEARTBEAT_S) for p, _ in procs]
  finally:
    _kill_all(procs)
  assert all(rc != 0 for rc in codes), codes  # the job did not finish: not a success
  with open(procs[0][1]) as f:
    log0 = f.read()
  assert "Preempted: stopped at step" in log0, _tail(procs[0][1])
  stopped = int(log0.split("Preempted: stopped at step ")[1].split()[0])
  assert 10 < stopped < TOTAL_STEPS
  assert ckpt_lib.Checkpoints(workdir, read_only=True).latest_step() == stopped

  procs = _start(workdir, 2, 2, "restart")  # the same command again finishes the run
  _finish(procs)
  with open(procs[0][1]) as f:
    assert f"Resumed from step {stopped} " in f.read()
  step, params = _params(workdir)
  assert step == TOTAL_STEPS
  _assert_same_params(params, _params(reference_runs[1])[1])
  with open(os.path.join(workdir, "metrics.jsonl")) as f, \
       open(os.path.join(reference_runs[1], "metrics.jsonl")) as g:
    drop = lambda r: {k: v for k, v in r.items() if k not in ("seconds", "steps_per_second")}
    assert [drop(json.loads(l)) for l in f] == [drop(json.loads(l)) for l in g]
