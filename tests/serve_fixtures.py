"""The `stub` fixture (a pytest plugin: `pytest_plugins = ["tests.serve_fixtures"]`): an
OpenAI-compatible stub upstream (tests/stub_upstream.py) on 127.0.0.1, its /v1 base URL."""

import threading
from http.server import ThreadingHTTPServer

import pytest

from tests.stub_upstream import Stub


@pytest.fixture(scope="module")
def stub():
  server = ThreadingHTTPServer(("127.0.0.1", 0), Stub)
  thread = threading.Thread(target=server.serve_forever, daemon=True)
  thread.start()
  yield f"http://127.0.0.1:{server.server_address[1]}/v1"
  server.shutdown()
  server.server_close()
