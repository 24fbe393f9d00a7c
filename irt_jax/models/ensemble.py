"""A run made of other runs (kind `ensemble`): their logits, combined.

logit_m(q) = sum_k w[k, m] * logit_k,m(q) + bias[m]

over members k (finished runs of any kinds on the same data). How the members
are combined is chosen on the validation split from three rules:
  'mean'     w = 1/K, bias 0 (nothing fitted);
  'global'   one weight per member and one bias, shared by every LLM;
  'per_llm'  a weight per member and a bias for each LLM (stacking per column);
each fitted as a logistic regression of the val labels on the members' val
logits (L2, C=1). `combine='auto'` scores the three by 2-fold cross-fitting over
val queries (fit on one half, log loss on the other) and keeps the lowest; the
chosen rule is then refitted on all of val.

Members are copied in: the params hold every member's params, and the spec
holds every member's `config.model` (as JSON), so a saved ensemble predicts on
its own and a member's workdir may later be moved, retrained or deleted without
changing it. Loading the members, checking they fit the data, and saving are
the training layer's job (training/fitting.py); this module is pure.
"""

from __future__ import annotations

import dataclasses
import functools
import json

import jax.numpy as jnp
import ml_collections
import numpy as np

from irt_jax import numerics
from irt_jax.models import base
from irt_jax.utils import ConfigError

COMBINES = ("auto", "mean", "global", "per_llm")
FITTED = ("mean", "global", "per_llm")  # what 'auto' chooses from


@dataclasses.dataclass(frozen=True)
class Spec:
  n_models: int
  input_dim: int
  members: str            # member workdirs, comma-separated (a record; not read to predict)
  combine: str            # one of COMBINES
  member_models: tuple    # each member's config.model as JSON (filled in when fitted)


def check(spec: Spec) -> None:
  """One error naming the field for an ensemble that cannot be built."""
  if spec.combine not in COMBINES:
    raise ConfigError(f"config.model.combine={spec.combine!r}: expected one of "
                      f"{', '.join(COMBINES)}")
  if not member_workdirs(spec):
    raise ConfigError("config.model.members is empty: list the workdirs of the runs to combine "
                      "(e.g. --config.model.members=runs/irtnet,runs/logreg)")


def member_workdirs(spec: Spec) -> list[str]:
  return [w.strip() for w in spec.members.split(",") if w.strip()]


@functools.lru_cache(maxsize=64)
def member_kinds(spec: Spec) -> tuple:
  """(kind, spec) of every member, rebuilt from the JSON the spec carries."""
  from irt_jax import models  # the registry (this module is one of its kinds)
  out = []
  for text in spec.member_models:
    model = ml_collections.ConfigDict(json.loads(text))
    kind = models.for_config(ml_collections.ConfigDict({"model": model}))
    out.append((kind, kind.spec(model, spec.n_models, spec.input_dim)))
  return tuple(out)


def member_logits(params, embeddings, spec: Spec) -> jnp.ndarray:
  """[K, B, M]: each member's logits (prediction mode)."""
  return jnp.stack([kind.logits(params["members"][f"m{i}"], embeddings, s)
                    for i, (kind, s) in enumerate(member_kinds(spec))])


def logits(params, embeddings, spec: Spec, *, train=False, rng=None, query_index=None):
  del train, rng, query_index
  stacked = member_logits(params, embeddings, spec)
  return jnp.einsum("kbm,km->bm", stacked, params["weight"]) + params["bias"]


# ----------------------------------------------------------------------------
# Fitting the combination on val (numpy; members' val logits are given).

def _logistic(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
  """Weights and bias of an L2 (C=1) logistic regression; a one-class target
  gets equal weights summing to 1 and no bias (the mean)."""
  if len(np.unique(y)) < 2:
    return np.full(x.shape[1], 1.0 / x.shape[1]), 0.0
  from sklearn.linear_model import LogisticRegression
  clf = LogisticRegression(C=1.0, max_iter=1000).fit(x, y)
  return clf.coef_[0], float(clf.intercept_[0])


def fit_combination(rule: str, z: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(weight [K, M], bias [M]) of `rule` from member logits z [K, n, M] and
  labels [n, M] (-1 unknown)."""
  k, _, m = z.shape
  known = labels >= 0
  if rule == "mean":
    return np.full((k, m), 1.0 / k), np.zeros(m)
  if rule == "global":
    w, b = _logistic(z[:, known].T, labels[known])
    return np.repeat(w[:, None], m, 1), np.full(m, b)
  if rule == "per_llm":
    weight, bias = np.empty((k, m)), np.empty(m)
    for j in range(m):
      rows = known[:, j]
      weight[:, j], bias[j] = _logistic(z[:, rows, j].T, labels[rows, j])
    return weight, bias
  raise ConfigError(f"config.model.combine={rule!r}: expected one of {', '.join(COMBINES)}")


def cross_fitted_logits(rule: str, z: np.ndarray, labels: np.ndarray,
                        seed: int = 0) -> np.ndarray:
  """Combined logits [n, M] where each half of the queries (a seeded split) is
  predicted by `rule` fitted on the other half: an honest val score for a
  combination fitted on val."""
  n = z.shape[1]
  half = np.random.default_rng(seed).permutation(n) < n // 2
  out = np.empty(z.shape[1:])
  for fit_rows in (half, ~half):
    weight, bias = fit_combination(rule, z[:, fit_rows], labels[fit_rows])
    out[~fit_rows] = np.einsum("knm,km->nm", z[:, ~fit_rows], weight) + bias
  return out


def choose_combination(z: np.ndarray, labels: np.ndarray, seed: int = 0) -> dict[str, float]:
  """Cross-fitted val log loss of each rule (`cross_fitted_logits`)."""
  from irt_jax import metrics
  known = labels >= 0
  scores = {}
  for rule in FITTED:
    combined = cross_fitted_logits(rule, z, labels, seed)
    p = numerics.sigmoid(combined[known])
    scores[rule] = metrics.binary_metrics(p, labels[known])["log_loss"]
  return scores


def fit(spec: Spec, data, config, rng, members=None) -> base.Params:
  """The combination fitted on val. `members`: the member params, in order
  (given by training/fitting.py, which loads and checks the member runs)."""
  del config, rng
  check(spec)
  if members is None or len(members) != len(spec.member_models):
    raise ConfigError("an ensemble is built from its member runs: train it with train.py "
                      "(training/fitting.py loads config.model.members)")
  val = data.split("val")
  params = {"members": {f"m{i}": p for i, p in enumerate(members)}}
  z = np.asarray(member_logits(params, jnp.asarray(data.embeddings[val.queries], jnp.float32),
                               spec), np.float64)
  labels = np.where(val.mask, val.labels, -1)
  rule = spec.combine
  if rule == "auto":
    scores = choose_combination(z, labels)
    rule = min(scores, key=scores.get)
  weight, bias = fit_combination(rule, z, labels)
  params["weight"] = weight.astype(np.float32)
  params["bias"] = bias.astype(np.float32)
  params["rule"] = np.int32(FITTED.index(rule))  # which rule val chose (a record)
  return params


KIND = base.Kind(name="ensemble", spec_cls=Spec, fit=fit, logits=logits, takes_members=True,
                 description="other runs' logits combined by weights fitted on val")
