"""A throwaway PostgreSQL server for the store tests (a pytest plugin: the `postgres`
fixture yields a postgresql:// URL), or a skip saying why none could start.

The machine's own binaries are used (`initdb` and `postgres` on PATH, in /usr/local/bin
or in Debian's /usr/lib/postgresql/<version>/bin, which `.ci/run` installs when none is
found). PostgreSQL refuses to run as root: as root, the server runs as `nobody` in a
folder it owns. It listens on a free port of 127.0.0.1 only, with trust authentication,
and fsync off (a test server: the tests kill service replicas, never the database).
"""

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest

RUN_AS = "nobody"


def binaries() -> tuple[str, str] | None:
  """(initdb, postgres), or None."""
  folders = [os.path.dirname(p) for p in (shutil.which("postgres"), shutil.which("initdb")) if p]
  folders += ["/usr/local/bin"] + sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
  for folder in folders:
    initdb, postgres = os.path.join(folder, "initdb"), os.path.join(folder, "postgres")
    if os.access(initdb, os.X_OK) and os.access(postgres, os.X_OK):
      return initdb, postgres
  return None


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


class Server:
  """initdb in a temporary folder, then postgres on a free loopback port."""

  def __init__(self):
    found = binaries()
    if found is None:
      raise RuntimeError("no PostgreSQL binaries (initdb, postgres) on this machine; "
                         ".ci/run installs Debian's postgresql package")
    initdb, postgres = found
    self.folder = tempfile.mkdtemp(prefix="irt-pg-")
    data = os.path.join(self.folder, "data")
    user = {}
    if os.geteuid() == 0:
      entry = pwd.getpwnam(RUN_AS)
      os.chown(self.folder, entry.pw_uid, entry.pw_gid)
      user = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
    env = dict(os.environ, LC_ALL="C", HOME=self.folder)
    done = subprocess.run([initdb, "-D", data, "-U", "irt", "-A", "trust", "--no-sync",
                           "-E", "UTF8"], capture_output=True, text=True, env=env, cwd=self.folder,
                          timeout=120, **user)
    if done.returncode:
      raise RuntimeError(f"initdb failed: {done.stderr.strip()[-500:]}")
    self.port = _free_port()
    self.proc = subprocess.Popen(
        [postgres, "-D", data, "-p", str(self.port), "-c", "listen_addresses=127.0.0.1",
         "-c", f"unix_socket_directories={self.folder}", "-c", "fsync=off",
         "-c", "max_connections=100"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, cwd=self.folder,
        **user)
    self.url = f"postgresql://irt@127.0.0.1:{self.port}/postgres"
    self._wait()

  def _wait(self) -> None:
    import psycopg
    for _ in range(300):
      if self.proc.poll() is not None:
        raise RuntimeError(f"postgres exited: {self.proc.stderr.read()[-500:]}")
      with contextlib.suppress(psycopg.OperationalError):
        psycopg.connect(self.url, connect_timeout=2).close()
        return
      time.sleep(0.1)
    raise RuntimeError("postgres did not accept connections within 30 s")

  def close(self) -> None:
    if getattr(self, "proc", None) is not None and self.proc.poll() is None:
      self.proc.send_signal(signal.SIGINT)        # fast shutdown; then kill
      try:
        self.proc.wait(timeout=10)
      except subprocess.TimeoutExpired:
        self.proc.kill()
        self.proc.wait()
    shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres():
  pytest.importorskip("psycopg", reason="psycopg is not installed (requirements.txt)")
  try:
    server = Server()
  except (RuntimeError, OSError, KeyError, subprocess.SubprocessError) as e:
    pytest.skip(f"no PostgreSQL server could start here: {e}")
  try:
    yield server.url
  finally:
    server.close()
