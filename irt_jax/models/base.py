"""What every model kind provides, so nothing downstream branches on kind.

A kind turns query embeddings into logits of P(correct) for every model:
`logits(params, embeddings [B, D], spec) -> [B, M]`. It is either trained by
gradient (`init` + `logits`, and optionally its own `loss_sum`; the pmapped step
in training.py is the same for every such kind) or fitted directly from the
data (`fit`). Either way the result is a params pytree saved by the same
checkpoint code and loaded back as the same predictor (predictors.py).

Kinds with an item-response reading (abilities theta_m and per-query
discrimination a_q / difficulty b_q) also provide `irt`, which interpretability
and adding a new LLM use.

Specs are frozen dataclasses built from `config.model` plus the data's shape.
They have no defaults of their own: the kind's config file is the one home of
every default, and a field the kind does not take is an error naming the valid
ones.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp

from irt_jax.models import losses
from irt_jax.utils import ConfigError

Params = dict[str, Any]
DATA_FIELDS = ("n_models", "input_dim")  # filled in from the data, not the config


def spec_from_config(spec_cls, model_config, n_models: int, input_dim: int):
  """Builds `spec_cls` from config.model (minus `name`) and the data's shape."""
  return spec_cls(n_models=n_models, input_dim=input_dim,
                  **model_fields(spec_cls, model_config))


def model_fields(spec_cls, model_config) -> dict:
  """config.model's fields for `spec_cls` (all but the data's shape), checked:
  an unknown or missing field is a ConfigError naming it."""
  given = {k: v for k, v in dict(model_config).items() if k != "name"}
  fields = [f.name for f in dataclasses.fields(spec_cls) if f.name not in DATA_FIELDS]
  name = dict(model_config).get("name", "?")
  unknown = sorted(set(given) - set(fields))
  if unknown:
    raise ConfigError(f"config.model.{unknown[0]} is not a field of model kind {name!r}; "
                      f"it takes: {', '.join(fields)}")
  # A field with a default may be left out (a run saved before the field existed).
  optional = {f.name for f in dataclasses.fields(spec_cls)
              if f.default is not dataclasses.MISSING}
  missing = [f for f in fields if f not in given and f not in optional]
  if missing:
    raise ConfigError(f"model kind {name!r} needs config.model.{missing[0]} (fields: "
                      f"{', '.join(fields)}); start from configs/{name}.py")
  # Lists (a grid read back from a checkpoint's JSON) become tuples: specs are hashed.
  return {k: tuple(v) if isinstance(v, list) else v for k, v in given.items()}


@dataclasses.dataclass(frozen=True)
class IrtView:
  """The item-response reading of a kind's params.

  abilities(params) -> theta [M, d];
  items(params, embeddings, spec) -> (a [B, d], b [B]) with
      logit = a . theta_m - b  (exactly the kind's logits);
  with_abilities(params, theta) -> params that predict with new abilities
      (the query network untouched): adding or replacing LLMs.
  gate(params, embeddings, spec) -> expert weights [B, E], or None.
  """
  abilities: Callable[[Params], jax.Array]
  items: Callable[..., tuple[jax.Array, jax.Array]]
  with_abilities: Callable[[Params, Any], Params]
  gate: Optional[Callable[..., jax.Array]] = None


def bce_loss_sum(kind: "Kind") -> Callable:
  """The default objective: summed BCE with logits over the observed cells."""

  def loss_sum(params, batch, spec, rng):
    logits = kind.logits(params, batch["embeddings"], spec, train=True, rng=rng,
                         query_index=batch["query_index"])
    return losses.masked_bce_sum(logits, batch["labels"], batch["mask"]), logits

  return loss_sum


@dataclasses.dataclass(frozen=True)
class Kind:
  """One model kind. Exactly one of (`init`) or (`fit`) is set.

  logits(params, embeddings, spec, *, train=False, rng=None, query_index=None)
      -> [B, M]; pure JAX, jit-compatible, for every kind.
  init(rng, spec) -> params                      (gradient kinds)
  loss_sum(params, batch, spec, rng) -> (sum over observed cells, logits)
      (gradient kinds; default: masked BCE of `logits`)
  fit(spec, data, run, rng) -> params             (fitted kinds; may read val; `run`:
      the training layer's resolved spec of the whole run, training.specs.RunSpec)
      with `takes_members`, also members=[params of the runs config.model.members
      names], loaded and checked by the training layer (training/members.py)
  prepare(params, spec) -> prepared; prepared_logits(prepared, embeddings, spec) -> [B, M]
      (optional, together): prediction-only re-association of the same function
      (e.g. folding every linear map after the last nonlinearity into one
      matrix), computed once per loaded predictor. Must equal `logits` without
      `train` up to float rounding; routing and evaluation then use it.
  """
  name: str
  spec_cls: type
  logits: Callable[..., jax.Array]
  init: Optional[Callable[[jax.Array, Any], Params]] = None
  fit: Optional[Callable[..., Params]] = None
  loss_sum: Optional[Callable[..., tuple[jax.Array, jax.Array]]] = None
  irt: Optional[IrtView] = None
  prepare: Optional[Callable[[Params, Any], Any]] = None
  prepared_logits: Optional[Callable[..., jax.Array]] = None
  description: str = ""
  takes_members: bool = False   # fit(..., members=[params of other runs]): an ensemble

  def __post_init__(self):
    if (self.init is None) == (self.fit is None):
      raise TypeError(f"kind {self.name!r}: give exactly one of init (gradient) or fit")
    if (self.prepare is None) != (self.prepared_logits is None):
      raise TypeError(f"kind {self.name!r}: give prepare and prepared_logits together")

  @property
  def trained_by_gradient(self) -> bool:
    return self.init is not None

  def spec(self, model_config, n_models: int, input_dim: int):
    return spec_from_config(self.spec_cls, model_config, n_models, input_dim)

  def objective(self) -> Callable:
    return self.loss_sum or bce_loss_sum(self)


def count_params(params: Params) -> int:
  return int(sum(x.size for x in jax.tree.leaves(params)))


def sigmoid_logit(p, eps: float = 1e-6):
  """log(p / (1 - p)) with p clipped into (eps, 1 - eps): logits for kinds that
  estimate a probability directly (neighbour votes)."""
  p = jnp.clip(p, eps, 1.0 - eps)
  return jnp.log(p) - jnp.log1p(-p)


def identified_items(kind: Kind, params: Params, embeddings, spec):
  """(a_q, difficulty_q) with abilities centred at zero, for kinds with an IRT view.

  IRT is identified only up to a shift of every theta_m; fixing mean ability to
  zero gives difficulty_q = b_q - a_q . mean(theta), the logit by which the
  average model falls short on q.
  """
  if kind.irt is None:
    raise ValueError(f"model kind {kind.name!r} has no item-response parameters")
  a, b = kind.irt.items(params, jnp.asarray(embeddings, jnp.float32), spec)
  return a, b - a @ jnp.mean(kind.irt.abilities(params), axis=0)
