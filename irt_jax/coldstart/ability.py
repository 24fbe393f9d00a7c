"""A new LLM from a few answers: its ability by MAP, and which queries to ask.

For kinds with an item-response reading (`kind.irt`; irtnet today) the query
network gives every query a discrimination a_q and difficulty b_q, and a model
is nothing but its ability theta: P(correct) = sigmoid(a_q . theta - b_q). A
new LLM therefore needs no retraining: with the query network and the other
abilities frozen, its theta is the maximum a posteriori estimate from its
answers under a Gaussian prior fitted to the trained abilities (their mean,
and their covariance shrunk towards a scaled identity by Ledoit and Wolf's
rule, since there are often fewer models than ability dimensions).

The MAP problem is a logistic regression with a Gaussian prior: strictly
convex, so a fixed number of damped Newton steps (each picking the best of a
few step lengths) solves it; the whole fit is one jit-compiled function,
with answers padded to a power of two so a growing answer set compiles a
handful of programs.

Which queries to ask (adaptive testing): the Fisher information of one answer
about theta is p(1 - p) a_q a_q^T, so after answers S the posterior precision
is about Lambda = prior precision + sum_S p(1 - p) a a^T. `propose` picks K
queries greedily by the D-optimal criterion, each maximising
log det(Lambda + p(1 - p) a a^T) = log det Lambda + log(1 + p(1 - p) a^T
Lambda^-1 a), updating Lambda^-1 by Sherman-Morrison after each pick (p at the
current estimate of theta). `adaptive_rounds` is the propose -> answer ->
update loop. criterion='trace' instead picks the query that most reduces the
mean variance of the predicted logits over the pool (I-optimality).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np

from irt_jax.errors import UserError
from irt_jax import numerics
from irt_jax import models
from irt_jax.models import base

NEWTON_STEPS = 25
STEP_LENGTHS = (1.0, 0.5, 0.25, 0.1)  # damped Newton: the best of these each step
MIN_PAD = 8


class ColdStartError(UserError, ValueError):
  """A run or input that cold start cannot use; the message says why."""


@dataclasses.dataclass(frozen=True)
class Prior:
  """Gaussian prior on a new model's ability."""
  mean: np.ndarray        # [d]
  precision: np.ndarray   # [d, d]


def prior_from_abilities(theta: np.ndarray, shrinkage: float | None = None) -> Prior:
  """Mean and (shrunk) covariance of trained abilities [M, d].

  `shrinkage` in [0, 1] mixes the sample covariance with mu * I (mu its mean
  variance); None estimates it by Ledoit-Wolf.
  """
  theta = np.asarray(theta, np.float64)
  m, d = theta.shape
  if m < 2:
    raise ColdStartError(f"a prior on abilities needs at least 2 trained models, got {m}")
  mean = theta.mean(0)
  if shrinkage is None:
    from sklearn.covariance import ledoit_wolf
    cov, _ = ledoit_wolf(theta)
  else:
    sample = np.cov(theta, rowvar=False, bias=True).reshape(d, d)
    mu = np.trace(sample) / d
    cov = (1 - shrinkage) * sample + shrinkage * mu * np.eye(d)
  cov = cov + 1e-6 * (np.trace(cov) / d + 1e-12) * np.eye(d)
  return Prior(mean=mean, precision=np.linalg.inv(cov))


def _objective(theta, a, b, y, mask, mean, precision):
  z = a @ theta - b
  nll = jnp.sum(mask * (jax.nn.softplus(z) - y * z))
  diff = theta - mean
  return nll + 0.5 * diff @ precision @ diff


@functools.partial(jax.jit, static_argnames=("steps",))
def _map_newton(a, b, y, mask, mean, precision, steps: int = NEWTON_STEPS):
  lengths = jnp.asarray(STEP_LENGTHS, a.dtype)

  def hessian(theta):
    p = jax.nn.sigmoid(a @ theta - b)
    w = mask * p * (1 - p)
    return (a * w[:, None]).T @ a + precision

  def step(_, theta):
    g = jax.grad(_objective)(theta, a, b, y, mask, mean, precision)
    direction = jnp.linalg.solve(hessian(theta), g)
    candidates = theta[None, :] - lengths[:, None] * direction[None, :]
    values = jax.vmap(lambda t: _objective(t, a, b, y, mask, mean, precision))(candidates)
    values = jnp.concatenate([values, _objective(theta, a, b, y, mask, mean, precision)[None]])
    candidates = jnp.concatenate([candidates, theta[None, :]])
    return candidates[jnp.argmin(values)]

  theta = jax.lax.fori_loop(0, steps, step, mean)
  return theta, hessian(theta)


def _pad(n: int) -> int:
  return max(MIN_PAD, 1 << (max(n, 1) - 1).bit_length())


def fit_ability(a: np.ndarray, b: np.ndarray, labels: np.ndarray,
                prior: Prior) -> tuple[np.ndarray, np.ndarray]:
  """MAP ability [d] and the posterior precision at it [d, d] from answers to
  queries with items a [k, d], b [k] and 0/1 labels [k] (k may be 0)."""
  a = np.asarray(a, np.float32).reshape(-1, len(prior.mean))
  k, d = a.shape
  size = _pad(k)
  pad = lambda x, shape: np.concatenate([x, np.zeros(shape, np.float32)])
  args = (pad(a, (size - k, d)), pad(np.asarray(b, np.float32), (size - k,)),
          pad(np.asarray(labels, np.float32), (size - k,)),
          pad(np.ones(k, np.float32), (size - k,)),
          np.asarray(prior.mean, np.float32), np.asarray(prior.precision, np.float32))
  theta, precision = _map_newton(*args)
  return np.asarray(theta, np.float64), np.asarray(precision, np.float64)


def propose(a: np.ndarray, b: np.ndarray, theta: np.ndarray, precision: np.ndarray,
            k: int, exclude=None, criterion: str = "d", target: np.ndarray | None = None,
            strata: np.ndarray | None = None) -> np.ndarray:
  """Indices of K queries (rows of a [P, d], b [P]) chosen greedily, best first.

  criterion 'd' (D-optimal): each pick maximises log det(precision + sum
  p(1 - p) a a^T). criterion 'trace' (I-optimal): each pick most reduces
  tr(target @ posterior covariance), by default with target = the pool's mean
  p(1 - p) a a^T, i.e. the mean variance of the predicted logits over the pool
  (what routing and accuracy estimates rest on).

  `strata` (e.g. each query's benchmark) keeps the picks representative:
  each pick comes from the stratum furthest below its share of the pool, so
  the most informative queries of one benchmark cannot crowd out the rest
  (per-benchmark accuracy is then never pure extrapolation).
  """
  if criterion not in ("d", "trace"):
    raise ValueError(f"criterion must be 'd' or 'trace', got {criterion!r}")
  a = np.asarray(a, np.float64)
  p = numerics.sigmoid(a @ np.asarray(theta, np.float64) - np.asarray(b, np.float64))
  w = p * (1 - p)
  cov = np.linalg.inv(np.asarray(precision, np.float64))
  if criterion == "trace" and target is None:
    target = (a * w[:, None]).T @ a / max(len(a), 1)
  allowed = np.ones(len(a), bool)
  if exclude is not None:
    allowed[np.asarray(list(exclude), np.int64)] = False
  if strata is not None:
    strata = np.asarray(strata)
    labels, strata = np.unique(strata, return_inverse=True)
    share = np.bincount(strata[allowed], minlength=len(labels)) / max(int(allowed.sum()), 1)
    counts = np.zeros(len(labels))
  picked = []
  for t in range(min(k, int(allowed.sum()))):
    candidates = allowed
    if strata is not None:
      open_ = np.bincount(strata[allowed], minlength=len(labels)) > 0
      deficit = np.where(open_, share * (t + 1) - counts, -np.inf)
      candidates = allowed & (strata == int(np.argmax(deficit)))
    spread = np.einsum("pd,de,pe->p", a, cov, a)
    if criterion == "d":
      gain = np.log1p(w * spread)
    else:
      reach = cov @ target @ cov
      gain = w * np.einsum("pd,de,pe->p", a, reach, a) / (1.0 + w * spread)
    gain = np.where(candidates, gain, -np.inf)
    q = int(np.argmax(gain))
    picked.append(q)
    allowed[q] = False
    if strata is not None:
      counts[strata[q]] += 1
    ca = cov @ a[q]
    cov = cov - np.outer(ca, ca) * (w[q] / (1.0 + w[q] * a[q] @ ca))
  return np.array(picked, np.int64)


def adaptive_rounds(a: np.ndarray, b: np.ndarray, answer: Callable[[np.ndarray], np.ndarray],
                    prior: Prior, batch: int = 8, rounds: int | None = None,
                    asked=(), labels=(), criterion: str = "d",
                    strata: np.ndarray | None = None) -> Iterator[dict]:
  """The propose -> answer -> update loop over a pool of queries (a [P, d], b [P]).

  `answer(indices) -> 0/1 labels` runs the new LLM (or looks its answers up).
  Starting from answers already known (`asked`, `labels`), each round proposes
  `batch` queries at the current estimate, gets their answers and refits;
  yields {asked, labels, theta, precision} after every round, until the pool
  or `rounds` is spent.
  """
  asked = [int(i) for i in asked]
  labels = [int(x) for x in labels]
  theta, precision = fit_ability(a[asked], b[asked], np.array(labels), prior)
  done = 0
  while len(asked) < len(a) and (rounds is None or done < rounds):
    new = propose(a, b, theta, precision, batch, exclude=asked, criterion=criterion,
                  strata=strata)
    got = np.asarray(answer(new)).astype(int).reshape(-1)
    asked += new.tolist()
    labels += got.tolist()
    theta, precision = fit_ability(a[asked], b[asked], np.array(labels), prior)
    done += 1
    yield {"asked": np.array(asked), "labels": np.array(labels), "theta": theta,
           "precision": precision}


# ----------------------------------------------------------------------------
# A run's side: item parameters and abilities.

def irt_view(kind: base.Kind) -> base.IrtView:
  if kind.irt is None:
    raise ColdStartError(f"model kind {kind.name!r} has no item-response view (abilities), so "
                         f"a new LLM cannot be added from answers; kinds with one: "
                         f"{', '.join(n for n in models.names() if models.get(n).irt)}")
  return kind.irt


@functools.lru_cache(maxsize=16)
def _jitted_items(kind: base.Kind, spec):
  return jax.jit(lambda params, v: kind.irt.items(params, v, spec))


def item_parameters(predictor, embeddings: np.ndarray,
                    chunk: int = 2048) -> tuple[np.ndarray, np.ndarray]:
  """(a [N, d], b [N]) of a predictor's kind for query embeddings [N, D]."""
  irt_view(predictor.kind)
  fn = _jitted_items(predictor.kind, predictor.spec)
  embeddings = np.asarray(embeddings, np.float32)
  a_parts, b_parts = [], []
  for start in range(0, len(embeddings), chunk):
    part = embeddings[start:start + chunk]
    rows = len(part)
    size = _pad(rows)
    if size > rows:
      part = np.concatenate([part, np.zeros((size - rows, part.shape[1]), np.float32)])
    a, b = fn(predictor.params, part)
    a_parts.append(np.asarray(a)[:rows])
    b_parts.append(np.asarray(b)[:rows])
  d = int(np.asarray(predictor.kind.irt.abilities(predictor.params)).shape[1])
  if not a_parts:
    return np.zeros((0, d), np.float32), np.zeros(0, np.float32)
  return np.concatenate(a_parts), np.concatenate(b_parts)


def abilities(predictor) -> np.ndarray:
  return np.asarray(irt_view(predictor.kind).abilities(predictor.params), np.float64)


def with_new_models(predictor, names, thetas):
  """A predictor over the old models plus new ones with abilities `thetas` [k, d]."""
  view = irt_view(predictor.kind)
  clash = sorted(set(names) & set(predictor.model_names))
  if clash:
    raise ColdStartError(f"model name(s) {clash} already in this run")
  theta = np.concatenate([abilities(predictor), np.asarray(thetas, np.float64).reshape(
      len(names), -1)])
  params = jax.device_get(view.with_abilities(predictor.params, theta.astype(np.float32)))
  return predictor.with_params(params, tuple(predictor.model_names) + tuple(names))
