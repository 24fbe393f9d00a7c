"""Why a query went where: the numbers behind one routing decision.

    router.explain(["What is 17 * 23?"])[0]     # a JSON-ready dict per query

Per LLM: P(correct), the logit, the cost (when the Router has costs) and the
rule's score, the quantity `rules.choose_with_cost` maximises (the logit when
cost_weight = 0, P - cost_weight * cost otherwise, -cost when it is inf; with
the cost rule balance, Avengers-Pro's score over the allowed models); the
chosen model and the runner-up with the margin between their scores (the same
choice as `Router.route`, made by `route_logits`).

For kinds with an item-response view (`models.base.IrtView`: irtnet,
irtnet_linear, mf), and for an ensemble through its first member that has one:
the query's difficulty b and discrimination |a| with their percentiles among
the run's training queries, and each LLM's a . theta (its logit is
a . theta - b). For every kind with a reference (the run's training split,
`reference.py`): the training queries nearest by cosine of embeddings, with
their benchmark and which LLMs answered them correctly. For an ensemble (the
recipe): each member's P(correct) and its weight per LLM.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from irt_jax.models import ensemble
from irt_jax.numerics import sigmoid
from irt_jax.routing import rules
from irt_jax.routing.reference import ItemSource, Reference, item_source, run_padded

N_NEIGHBOURS = 5


def score_name(cost_weight: float, rule: str = "linear") -> str:
  if rule == "balance":
    return ("alpha * (p_correct - min) / (max - min) + (1 - alpha) * (1 - cost / max cost), "
            "min and max over the allowed models")
  if cost_weight == 0:
    return "logit"
  return "-cost" if np.isinf(cost_weight) else "p_correct - cost_weight * cost"


def percentile(sorted_values: np.ndarray, x: float, rtol: float = 1e-5) -> float:
  """Percent of `sorted_values` below x, ties counted half (mid-rank). Values
  within `rtol` of x (relative, at least absolute near 0) are ties: a training
  query's own b, computed in a batch of another size, differs in the last bits."""
  n = len(sorted_values)
  tol = rtol * max(1.0, abs(x))
  below = np.searchsorted(sorted_values, x - tol, "left")
  upto = np.searchsorted(sorted_values, x + tol, "right")
  return float(100.0 * (below + 0.5 * (upto - below)) / n)


@functools.lru_cache(maxsize=16)
def _jitted_members(spec, item_member: int | None):
  """An ensemble's member logits [B, K, M] and, from the same program, the items
  (a, b) of its member `item_member` (its query network then runs once)."""
  def fn(params, v):
    z = jnp.moveaxis(ensemble.member_logits(params, v, spec), 0, 1)
    if item_member is None:
      return (z,)
    kind, member_spec = ensemble.member_kinds(spec)[item_member]
    return (z, *kind.irt.items(params["members"][f"m{item_member}"], v, member_spec))
  return jax.jit(fn)


class Explainer:
  """A predictor's explanations, with the reference it compares queries to
  (None when the run's training data cannot be read: `missing` says why)."""

  def __init__(self, predictor, reference: Reference | None = None, missing: str | None = None):
    self.predictor = predictor
    self.kind = getattr(predictor, "kind", None)     # None: a custom predictor
    self.model_names = tuple(predictor.model_names)
    self.source: ItemSource | None = item_source(predictor)
    self.reference, self.missing = reference, missing
    self.theta = None if self.source is None else self.source.theta()

  def forward(self, embeddings: np.ndarray):
    """(logits [n, M], (a, b) or None, members or None), running the query network once
    where the kind allows: an IRT kind's logits are a . theta - b from its items (its
    view's contract), an ensemble's its members' logits combined, with its IRT member's
    items from the same program; other kinds' are the predictor's. They equal the
    logits `route` uses up to float rounding."""
    emb = np.asarray(embeddings, np.float32)
    if getattr(self.kind, "takes_members", False):
      member = None if self.source is None else self.source.member
      out = run_padded(_jitted_members(self.predictor.spec, member), self._device_params, emb)
      weight = np.asarray(self.predictor.params["weight"], np.float64)
      bias = np.asarray(self.predictor.params["bias"], np.float64)
      logits = np.einsum("nkm,km->nm", out[0], weight) + bias
      members = {"p": sigmoid(out[0]), "weight": weight, "bias": bias}
      return logits, (out[1:] if member is not None else None), members
    if self.source is not None:
      a, b = self.source.items(emb)
      return a @ self.theta.T - b[:, None], (a, b), None
    return np.asarray(self.predictor.logits(emb), np.float64), None, None

  @functools.cached_property
  def _device_params(self):
    return jax.device_put(self.predictor.params)

  def explain(self, router, texts: Sequence[str], embeddings: np.ndarray,
              cost_weight: float = 0.0, candidates=None, costs=None,
              neighbours: int = N_NEIGHBOURS, *, rule: str = "linear",
              alpha: float | None = None) -> list[dict]:
    """One dict per query (see the module docstring); the choice is
    `router.route_logits`' on the logits of `forward`."""
    emb = np.asarray(embeddings, np.float32)
    n = emb.shape[0]
    if n == 0:
      return []
    logits, items, members = self.forward(emb)
    routes = router.route_logits(logits, cost_weight, None, candidates, costs, texts=texts,
                                 rule=rule, alpha=alpha)
    allowed = router.allowed(candidates)
    cost = router.cost_matrix(texts, n, costs)
    score = rules.rule_score(logits, cost, cost_weight, rule=rule, alpha=alpha, allowed=allowed)
    about_rule = ({"cost_weight": float(cost_weight)} if rule == "linear" else
                  {"cost_rule": rule, "alpha": float(alpha)})
    about = self._about_members() if members else None
    out = []
    for q in range(n):
      models = self._per_model(q, logits, cost, score, allowed, items, members)
      out.append({"query": texts[q], "rule": {**about_rule,
                                              "score": score_name(cost_weight, rule)},
                  "models": models, "choice": _choice(routes[q], models),
                  "item_response": self._item_response(q, items),
                  "neighbours": self._neighbours(emb[q], neighbours),
                  **({"members": about} if about else {})})
    return out

  def _per_model(self, q, logits, cost, score, allowed, items, members) -> list[dict]:
    p = sigmoid(logits[q])
    a_theta = None if items is None else items[0][q] @ self.theta.T
    rows = []
    for m, name in enumerate(self.model_names):
      row = {"model": name, "p_correct": float(p[m]), "logit": float(logits[q, m]),
             "cost": None if cost is None else float(cost[q, m]), "score": float(score[q, m]),
             "allowed": bool(allowed[m])}
      if a_theta is not None:
        row["a_theta"] = float(a_theta[m])
      if members:
        row["member_p_correct"] = [float(x) for x in members["p"][q, :, m]]
        row["member_weight"] = [float(x) for x in members["weight"][:, m]]
        row["bias"] = float(members["bias"][m])
      rows.append(row)
    return rows

  def _about_members(self) -> list[dict]:
    spec = self.predictor.spec
    workdirs = ensemble.member_workdirs(spec)
    return [{"member": f"m{k}", "kind": kind.name,
             "workdir": workdirs[k] if k < len(workdirs) else None}
            for k, (kind, _) in enumerate(ensemble.member_kinds(spec))]

  def _item_response(self, q: int, items) -> dict:
    if items is None:
      return {"skipped": f"kind {_kind_name(self)!r} has no item-response view"}
    a, b = items[0][q], float(items[1][q])
    a_norm = float(np.linalg.norm(a))
    out = {"source": self.source.label, "b": b, "a_norm": a_norm,
           "b_percentile": None, "a_norm_percentile": None}
    ref = self.reference
    if ref is not None and ref.b_sorted is not None:
      out["b_percentile"] = percentile(ref.b_sorted, b)
      out["a_norm_percentile"] = percentile(ref.a_norm_sorted, a_norm)
      out["reference_queries"] = int(len(ref.b_sorted))
    elif self.missing:
      out["reference"] = self.missing
    return out

  def _neighbours(self, embedding: np.ndarray, k: int) -> list[dict] | dict:
    ref = self.reference
    if ref is None:
      return {"skipped": self.missing or "no reference queries"}
    near = ref.nearest(embedding, k)
    return [ref.describe(i, float(sim), self.model_names) for i, sim in near]


def _kind_name(explainer: Explainer) -> str:
  return getattr(explainer.kind, "name", "custom")


def _choice(route, models: list[dict]) -> dict:
  by_name = {row["model"]: row for row in models}
  chosen = by_name[route.model]
  out = {"model": route.model, "p_correct": chosen["p_correct"], "runner_up": route.runner_up,
         "margin": None, "margin_p": None}
  if route.runner_up is not None:
    second = by_name[route.runner_up]
    out["margin"] = chosen["score"] - second["score"]
    out["margin_p"] = chosen["p_correct"] - second["p_correct"]
  return out


def abilities_map(explainer: Explainer) -> dict:
  """The LLMs' abilities on their first two principal axes, with each LLM's
  strongest benchmark (its training accuracy there minus the mean LLM's)."""
  from irt_jax.numerics import pca_2d
  names = list(explainer.model_names)
  if explainer.theta is None:
    return {"skipped": f"kind {_kind_name(explainer)!r} has no abilities"}
  coords, share = pca_2d(explainer.theta)
  out = {"source": explainer.source.label, "models": names,
         "x": coords[:, 0].round(5).tolist(), "y": coords[:, 1].round(5).tolist(),
         "variance_share": share.round(4).tolist(), "strength": None}
  if explainer.reference is not None:
    out["strength"] = explainer.reference.strengths()
  return out


def make_explainer(predictor, workdir: str | None) -> Explainer:
  """An Explainer whose reference is the training split of the run in `workdir`;
  without a workdir, or when that data cannot be read, one without (saying why)."""
  if workdir is None:
    return Explainer(predictor, None, "the Router was not loaded from a run's workdir, so "
                                      "there are no training queries to compare with")
  from irt_jax.checkpoint import CheckpointError
  from irt_jax.routing.reference import load_reference
  try:
    reference = load_reference(workdir, predictor.model_names, item_source(predictor))
  except (OSError, ValueError, CheckpointError) as e:   # DataError: the data is not there
    return Explainer(predictor, None, f"the training data of {workdir} cannot be read ({e})")
  return Explainer(predictor, reference)
