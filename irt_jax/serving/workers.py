"""`serve --workers=N`: N service processes on one listening socket.

The supervisor (the process the user started) binds the port once and starts
N copies of the same command with `--workers=1 --socket_fd=FD`, each a whole
service (its own Router, batcher and upstream client) accepting on the shared
socket; the kernel spreads connections among them. It loads no model itself.
What the workers share:

- /metrics: prometheus-client's multiprocess mode. The supervisor gives every
  worker one fresh PROMETHEUS_MULTIPROC_DIR; each worker writes its counts
  there and any worker's /metrics sums them all (`Metrics.render`).
- the store: the files are appended under `flock` (serving/store.py), or the
  database is shared anyway.
- keys: each worker re-reads a changed keys file by itself (within a second).
- reloads: SIGHUP to the supervisor goes to every worker. POST /admin/reload
  reaches one worker; it writes the run it loaded to the shared folder and
  sends SIGHUP to the supervisor, which passes it to the other workers, and
  each of them, on a SIGHUP, loads the run named there (`shared_reloader`).
- cool-downs are per worker: each learns an upstream is failing from its own
  requests (up to N x cooldown_failures failures in all before every worker
  has cooled it down), and /health shows the answering worker's view.

A worker that exits ends the supervisor (and the other workers) with its
status: `serve` fails as a whole, as one process would.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile

SHARED_ENV = "IRT_JAX_WORKERS_DIR"
METRICS_ENV = "PROMETHEUS_MULTIPROC_DIR"
WORKDIR_FILE = "reloaded_workdir"
FORWARDED = (signal.SIGHUP, signal.SIGTERM, signal.SIGINT)


def child_args(argv: list[str], fd: int) -> list[str]:
  """The worker's flags: the supervisor's, with --workers=1 and the socket's fd."""
  kept = [a for a in argv if not a.startswith(("--workers", "--socket_fd"))]
  return kept + ["--workers=1", f"--socket_fd={fd}"]


def bind(host: str, port: int) -> socket.socket:
  family = socket.AF_INET6 if ":" in host else socket.AF_INET
  sock = socket.socket(family, socket.SOCK_STREAM)
  sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
  sock.bind((host, port))
  sock.listen(2048)
  sock.set_inheritable(True)
  return sock


def supervise(command: list[str], argv: list[str], workers: int, host: str, port: int) -> int:
  """Runs `command + argv` (e.g. python -m irt_jax serve --flags) as `workers`
  processes on host:port until one exits or the supervisor is told to stop;
  returns the exit status."""
  sock = bind(host, port)
  shared = tempfile.mkdtemp(prefix="irt-jax-workers-")
  os.makedirs(os.path.join(shared, "metrics"))
  env = dict(os.environ, **{SHARED_ENV: shared, METRICS_ENV: os.path.join(shared, "metrics")})
  procs: list[subprocess.Popen] = []
  try:
    for _ in range(workers):
      procs.append(subprocess.Popen([*command, *child_args(argv, sock.fileno())],
                                    pass_fds=(sock.fileno(),), env=env))
    # Blocked only now (a child inherits the mask): they wait for sigtimedwait.
    signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED + (signal.SIGCHLD,))
    print(f"serve: {workers} workers on http://{host}:{port} (pids "
          f"{', '.join(str(p.pid) for p in procs)})", file=sys.stderr, flush=True)
    return _wait(procs)
  finally:
    for p in procs:
      if p.poll() is None:
        p.terminate()
    for p in procs:
      with contextlib.suppress(subprocess.TimeoutExpired):
        p.wait(timeout=30)
    sock.close()
    shutil.rmtree(shared, ignore_errors=True)


def _wait(procs: list[subprocess.Popen]) -> int:
  """Passes signals on until a worker exits (its status) or SIGTERM/SIGINT (0)."""
  while True:
    info = signal.sigtimedwait(FORWARDED + (signal.SIGCHLD,), 1.0)
    for p in procs:
      if p.poll() is not None:
        print(f"serve: worker {p.pid} exited with {p.returncode}; stopping", file=sys.stderr)
        return p.returncode or 1
    if info is None or info.si_signo == signal.SIGCHLD:
      continue
    for p in procs:
      if p.pid != info.si_pid:             # not back to the worker that sent it
        with contextlib.suppress(ProcessLookupError):
          p.send_signal(info.si_signo)
    if info.si_signo != signal.SIGHUP:
      for p in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
          p.wait(timeout=30)
      return 0


def shared_reloader(reloader):
  """In a worker: `reloader` (workdir or None, the Router serving) -> Router, made
  to reach the other workers. A reload naming a run records it in the shared
  folder and tells the supervisor (SIGHUP), which tells the other workers; a
  reload naming none (a SIGHUP) loads the run recorded there, if any."""
  folder = os.environ.get(SHARED_ENV)
  if not folder:
    return reloader
  path = os.path.join(folder, WORKDIR_FILE)

  def load(workdir, old):
    named = workdir is not None
    if not named and os.path.exists(path):
      with open(path, encoding="utf-8") as f:
        workdir = f.read() or None
    new = reloader(workdir, old)
    if named:
      tmp = f"{path}.{os.getpid()}"
      with open(tmp, "w", encoding="utf-8") as f:
        f.write(new.workdir or workdir)
      os.replace(tmp, path)
      os.kill(os.getppid(), signal.SIGHUP)
    return new
  return load


def socket_from_fd(fd: int) -> socket.socket:
  """The listening socket the supervisor passed (its family read from the fd)."""
  return socket.socket(fileno=fd)
