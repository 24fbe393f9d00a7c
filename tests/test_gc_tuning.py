"""serving/gc_tuning.py: start-up's garbage is collected, what is alive is frozen, and the
app settles once it has started only when asked to."""

import gc
import weakref

from fastapi.testclient import TestClient

from irt_jax.routing.router import Router
from irt_jax.serving import app as serving
from irt_jax.serving import gc_tuning
from tests.fake_encoder import HashEncoder
from tests.test_hotpath import Linear


class Node:
  pass


def test_settle_collects_garbage_then_freezes_the_living():
  gc.unfreeze()
  try:
    cycle, alive = Node(), Node()
    cycle.self = cycle                      # garbage only a collection can free
    dead_ref, alive_ref = weakref.ref(cycle), weakref.ref(alive)
    del cycle
    assert dead_ref() is not None and gc.get_freeze_count() == 0
    gc_tuning.settle()
    assert dead_ref() is None               # collected before the freeze, not frozen with it
    assert alive_ref() is alive and gc.get_freeze_count() > 1000
  finally:
    gc.unfreeze()


def test_the_app_settles_on_start_only_when_asked(monkeypatch):
  calls = []
  monkeypatch.setattr(gc_tuning, "settle", lambda: calls.append(1))
  router = Router.from_predictor(Linear(), HashEncoder(8), name="irtnet")
  for settle_gc, want in ((False, []), (True, [1])):
    calls.clear()
    with TestClient(serving.create_app(router, settle_gc=settle_gc)) as client:
      assert client.get("/health").status_code == 200
    assert calls == want
