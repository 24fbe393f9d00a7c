"""The `page_service` fixture (a pytest plugin, with tests.router_fixtures and
tests.serve_fixtures): the service on a trained run with keys, an admin key, costs,
a feedback log, stub upstreams and a reloader, for tests/test_page.py and the browser test."""

import numpy as np
import pytest

from irt_jax import predictors
from irt_jax.routing.router import Router
from irt_jax.serving import app as serving
from irt_jax.serving.keys import KeyFile
from tests.fake_encoder import HashEncoder
from tests.stub_upstream import Service

USER_KEY, ADMIN_KEY = "sk-page-user-4d1a", "sk-page-admin-8c2e"


@pytest.fixture(scope="module")
def page_service(run, stub, tmp_path_factory):
  """{"url", "router", "routable", "feedback_log"}; USER_KEY may call, ADMIN_KEY is also an
  admin key. The Router has the run's workdir, so explanations read its training queries."""
  base = tmp_path_factory.mktemp("page")
  predictor = predictors.load(run).predictor
  names = list(predictor.model_names)
  router = Router(predictor, HashEncoder(predictor.input_dim),
                  costs=np.linspace(1.0, 0.1, len(names)), workdir=run)
  (base / "keys.txt").write_text(f"{USER_KEY}\n{ADMIN_KEY}\n")
  (base / "admin.txt").write_text(f"{ADMIN_KEY}\n")
  access = serving.Access(keys=KeyFile(str(base / "keys.txt")),
                          admin_keys=KeyFile(str(base / "admin.txt")))
  routable = names[:4]
  upstreams = serving.parse_upstreams({n: {"base_url": stub} for n in routable})
  log = str(base / "feedback.jsonl")
  app = serving.create_app(router, upstreams, serving.Limits(upstream_timeout_s=2.0),
                           access=access, feedback_log=log,
                           reloader=lambda workdir, old: old)
  service = Service(app)
  yield {"url": service.url, "router": router, "routable": routable, "feedback_log": log}
  service.close()
