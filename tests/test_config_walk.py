"""How far a training config travels: resolved once at the entry point into typed
specs, so few modules ever receive the ConfigDict and calls carrying it rarely
climb back up a layer (layers as in tests/test_layering.py).

A tiny run is traced with sys.setprofile: every Python call that receives a
ConfigDict (or FrozenConfigDict) argument is recorded with its module and its
caller's module.
"""

import sys

import ml_collections
import pytest

from configs import knn as knn_config
from configs import test as test_config
from irt_jax import training
from tests import test_layering

MAX_MODULES = 6
MAX_CLIMBS = 2
CONFIG_TYPES = (ml_collections.ConfigDict, ml_collections.FrozenConfigDict)


def _takes_config(frame) -> bool:
  code = frame.f_code
  n_args = code.co_argcount + code.co_kwonlyargcount
  n_args += bool(code.co_flags & 0x04) + bool(code.co_flags & 0x08)  # *args, **kwargs
  values = [frame.f_locals.get(name) for name in code.co_varnames[:n_args]]
  for value in values:
    if isinstance(value, CONFIG_TYPES):
      return True
    if isinstance(value, (tuple, list)) and any(isinstance(v, CONFIG_TYPES) for v in value):
      return True
    if isinstance(value, dict) and any(isinstance(v, CONFIG_TYPES) for v in value.values()):
      return True
  return False


def config_walk(fn, *args):
  """(distinct irt_jax modules that received the config, calls carrying it from a
  lower layer into a higher one as (caller, callee)) while `fn(*args)` runs."""
  modules, climbs = set(), []

  def profile(frame, event, arg):
    if event != "call":
      return
    me = frame.f_globals.get("__name__", "")
    if not me.startswith("irt_jax.") or not _takes_config(frame):
      return
    modules.add(me)
    caller = frame.f_back.f_globals.get("__name__", "") if frame.f_back else ""
    if caller.startswith("irt_jax."):
      layer = test_layering.LAYER
      if layer[test_layering.unit(caller)] < layer[test_layering.unit(me)]:
        climbs.append((caller, me))

  sys.setprofile(profile)
  try:
    fn(*args)
  finally:
    sys.setprofile(None)
  return modules, climbs


@pytest.mark.slow
def test_a_training_run_passes_its_config_to_few_modules(tmp_path):
  config = test_config.get_config()
  config.train.num_epochs = 1
  modules, climbs = config_walk(training.run, config, str(tmp_path / "run"))
  assert "irt_jax.training.specs" in modules  # the resolver reads it
  assert len(modules) <= MAX_MODULES, sorted(modules)
  assert len(climbs) <= MAX_CLIMBS, climbs
  assert not any(m.startswith("irt_jax.models") for m in modules), modules  # specs only


def test_a_fitted_run_passes_its_config_to_few_modules(tmp_path):
  config = knn_config.get_config()
  config.data = test_config.get_config().data
  modules, climbs = config_walk(training.run, config, str(tmp_path / "run"))
  assert len(modules) <= MAX_MODULES, sorted(modules)
  assert len(climbs) <= MAX_CLIMBS, climbs
  assert not any(m.startswith("irt_jax.models") or m == "irt_jax.training.fitting"
                 for m in modules), modules  # the kind gets its spec and the RunSpec


def test_the_walk_sees_a_config_handed_down_and_a_climb_back_up():
  """The tracer itself: a config handed to a data-layer function is seen, and
  a data-layer function handing it to a training-layer one is a climb."""
  from irt_jax.data import resolve
  from irt_jax.training import specs
  config = test_config.get_config()

  def planted():
    resolve.folder(config, "w")  # training -> data: down
    code = compile("specs.resolve(config)", "planted", "eval")
    eval(code, {"__name__": "irt_jax.data.planted", "specs": specs, "config": config})

  modules, climbs = config_walk(planted)
  assert {"irt_jax.data.resolve", "irt_jax.training.specs"} <= modules
  assert climbs == [("irt_jax.data.planted", "irt_jax.training.specs")]


if __name__ == "__main__":
  raise SystemExit(pytest.main([__file__]))
