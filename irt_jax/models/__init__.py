"""The registry of model kinds: `get(name)` -> models.base.Kind.

Training, checkpoints, evaluation and routing take a Kind from here by the
name recorded in the config (`config.model.name`) and never branch on it.
"""

from __future__ import annotations

import importlib

from irt_jax.models.base import ConfigError, Kind

# name -> module holding KIND; imported on first use (the sklearn-backed kinds
# need not load for an IrtNet run).
_MODULES = {
    "irtnet": "irt_jax.models.irtnet",
    "irtnet_linear": "irt_jax.models.irtnet_linear",
    "mf": "irt_jax.models.mf",
    "knn": "irt_jax.models.knn",
    "cluster": "irt_jax.models.cluster",
    "logreg": "irt_jax.models.logreg",
    "routerdc": "irt_jax.models.routerdc",
    "ensemble": "irt_jax.models.ensemble",
}


def names() -> list[str]:
  return sorted(_MODULES)


def get(name: str) -> Kind:
  """The kind called `name`; an unknown name is a ConfigError listing the valid ones."""
  if name not in _MODULES:
    raise ConfigError(f"unknown model kind config.model.name={name!r}; valid kinds: "
                      f"{', '.join(names())}")
  kind = importlib.import_module(_MODULES[name]).KIND
  assert kind.name == name, (kind.name, name)
  return kind


def for_config(config) -> Kind:
  return get(config.model.get("name", "irtnet"))
