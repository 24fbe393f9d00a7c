"""Feedback and new LLMs for an `ensemble` run (the recommended recipe): each
member that can learn is updated, the others are left as they are, and the
combination is carried over.

Per member kind:
  * with an item-response view (irtnet, irtnet_linear, mf): the judged LLMs'
    abilities refitted by MAP under the trained abilities' prior, a new LLM's
    from the population prior (coldstart/feedback.refit, as for a single run);
  * `logreg`: the judged LLMs' per-LLM weights and bias refitted by MAP, a
    logistic regression under a Gaussian prior centred on the trained weights,
    its diagonal precision the inverse spread of the trained LLMs' weights per
    coordinate times `prior_scale` (the same idea as the abilities' prior); a
    new LLM starts from the mean of the trained LLMs' weights;
  * `knn` (models/knn.with_answers): an answer to a training query becomes the
    answering LLM's label there, any other answer an added neighbour labelled
    for it, counted where it is as close to a query as the k-th nearest
    training query; the answering LLM's prior moves with them, and a new LLM is
    known only through its answers and that prior;
  * any other kind (cluster, routerdc) cannot: it is left as it is, and a new
    LLM cannot be added to an ensemble holding one (an error naming it).

The combination (weights per member and LLM, fitted on val when the ensemble
was built) is not refitted on val, which would pull the updated members back to
the answers val holds. For each judged LLM it learns from the feedback instead
(`refit_combination`): its member weights and bias refitted by MAP under a
Gaussian prior centred on the trained ones (precision: the inverse spread of
the trained LLMs' weights, or 1 where the rule shares them, times
`prior_scale`), on member logits cross-fitted over two halves of the records (each half predicted by members updated on the
other), so a member that learns only where the feedback lands (knn) loses
weight to one that learns the LLM as a whole, in proportion to the evidence. An
added LLM takes the mean of the other LLMs' member weights and biases.
"""

from __future__ import annotations

import zlib

import numpy as np

from irt_jax import predictors
from irt_jax.coldstart import ability
from irt_jax.models import knn
from irt_jax.numerics import sigmoid

PRIOR_FLOOR = 1e-6   # variance floor of a weight coordinate the trained LLMs share exactly


def members_of(predictor) -> list[predictors.Predictor]:
  """The ensemble's member predictors, in order."""
  from irt_jax.models import ensemble
  return [predictors.Predictor(kind=k, spec=s, params=predictor.params["members"][f"m{i}"],
                               model_names=predictor.model_names)
          for i, (k, s) in enumerate(ensemble.member_kinds(predictor.spec))]


def map_logistic(x, y, mean, precision, steps: int = 50):
  """argmax over (w, b) of sum log-likelihood(y | x w + b) - 0.5 sum precision
  ((w, b) - mean)^2, by Newton steps halved until the objective falls (a full
  step overshoots from a start far from the data, numpy float64)."""
  xb = np.hstack([np.asarray(x, np.float64), np.ones((len(x), 1))])
  mean = np.asarray(mean, np.float64)

  def loss(t):
    z = xb @ t
    return (np.logaddexp(0, z) - y * z).sum() + 0.5 * (precision * (t - mean) ** 2).sum()

  theta, current = mean.copy(), loss(mean)
  for _ in range(steps):
    p = sigmoid(xb @ theta)
    grad = xb.T @ (p - y) + precision * (theta - mean)
    hess = (xb * (p * (1 - p))[:, None]).T @ xb + np.diag(precision)
    step = np.linalg.solve(hess, grad)
    scale = 1.0
    while scale > 1e-6 and loss(theta - scale * step) > current:
      scale /= 2
    theta = theta - scale * step
    new = loss(theta)
    if current - new < 1e-10 * (1 + abs(new)):
      break
    current = new
  return theta


def refit_logreg(params, embeddings, records, names, prior_scale: float, new: list[str]):
  """(new params, per-model shifts) of a logreg member refitted from the records."""
  w, b = np.asarray(params["w"], np.float64), np.asarray(params["b"], np.float64)
  stacked = np.vstack([w, b[None, :]])                       # [D + 1, M]
  precision = prior_scale / np.maximum(stacked.var(1), PRIOR_FLOOR)
  models = np.array([r["model"] for r in records])
  y = np.array([r["correct"] for r in records], np.float64)
  out = np.hstack([stacked, np.repeat(stacked.mean(1, keepdims=True), len(new), 1)])
  all_names = list(names) + list(new)
  shifts = {}
  for name in sorted(set(models)):
    j = all_names.index(name)
    rows = models == name
    fitted = map_logistic(embeddings[rows], y[rows], out[:, j], precision)
    shifts[name] = float(np.linalg.norm(fitted - out[:, j]))
    out[:, j] = fitted
  return {"w": out[:-1].astype(np.float32), "b": out[-1].astype(np.float32)}, shifts


def _member_update(member, embeddings, records, prior_scale, new, irt_refit):
  """(new member params, what happened) for one member."""
  name = member.kind.name
  if member.kind.irt is not None:
    updated, _ = irt_refit(member, embeddings, records, prior_scale=prior_scale,
                           add_new=bool(new))
    return updated.params, f"{name}: abilities refitted by MAP"
  if name == "logreg":
    params, _ = refit_logreg(member.params, embeddings, records, member.model_names,
                             prior_scale, new)
    return params, f"{name}: per-LLM weights refitted under a Gaussian prior on the trained ones"
  if name == "knn":
    all_names = list(member.model_names) + list(new)
    index = np.array([all_names.index(r["model"]) for r in records])
    correct = np.array([r["correct"] for r in records], np.float32)
    params = knn.with_answers(member.params, embeddings, index, correct, len(all_names))
    return params, (f"{name}: the answers taken as labels (in place on training queries, "
                    "as added labelled neighbours elsewhere)")
  if new:
    raise ability.ColdStartError(f"ensemble member of kind {name!r} cannot take a new LLM "
                                 f"({', '.join(new)}); only IrtNet-family, logreg and knn "
                                 "members can")
  return member.params, f"{name}: left as it is (it has no per-LLM parameters to refit)"


def refit(predictor, embeddings, records, *, new: list[str], prior_scale: float, irt_refit):
  """(the ensemble with every member that can learn updated, a summary per
  judged LLM, one line per member saying what was done). `new`: the judged
  LLMs the run lacks (checked by the caller), appended in that order;
  `irt_refit`: coldstart/feedback.refit, for the IrtNet-family members (passed
  in: feedback.update calls this module)."""
  names = list(predictor.model_names)
  params = {k: v for k, v in predictor.params.items()}
  params["members"], notes = {}, []
  for i, member in enumerate(members_of(predictor)):
    params["members"][f"m{i}"], note = _member_update(member, embeddings, records, prior_scale,
                                                      new, irt_refit)
    notes.append(f"m{i} {note}")
  weight, bias = refit_combination(predictor, embeddings, records, prior_scale, irt_refit)
  params["weight"] = np.hstack([weight, np.repeat(weight.mean(1, keepdims=True), len(new),
                                                  1)]).astype(np.float32)
  params["bias"] = np.concatenate([bias, np.full(len(new), bias.mean())]).astype(np.float32)
  out = predictor.with_params(params, names + list(new))
  y = np.array([r["correct"] for r in records], np.float64)
  models = np.array([r["model"] for r in records])
  summary = {n: {"answers": int((models == n).sum()), "correct": float(y[models == n].mean()),
                 "new": n in new} for n in sorted(set(models))}
  return out, summary, notes


def _fold(record) -> int:
  """0 or 1 by the record's query text (stable across runs and processes)."""
  return zlib.crc32(str(record.get("query", "")).encode("utf-8")) & 1


def refit_combination(predictor, embeddings, records, prior_scale: float, irt_refit):
  """(weight [K, M], bias [M]) with each judged LLM's column refitted by MAP on
  cross-fitted member logits (see the module's docstring); LLMs the run lacks
  are kept. Where the combination rule shares its weights across LLMs (`mean`,
  `global`), the prior has unit variance per weight."""
  names = list(predictor.model_names)
  weight = np.asarray(predictor.params["weight"], np.float64)
  bias = np.asarray(predictor.params["bias"], np.float64)
  rows = np.array([r["model"] in names for r in records])
  if not rows.any():
    return weight, bias
  recs = [r for r, keep in zip(records, rows) if keep]
  emb = np.asarray(embeddings)[rows]
  col = np.array([names.index(r["model"]) for r in recs])
  fold = np.array([_fold(r) for r in recs])
  z = np.zeros((len(recs), weight.shape[0]))
  for f in (0, 1):
    out, other = fold == f, fold != f
    if not out.any():
      continue
    others = [r for r, keep in zip(recs, other) if keep]
    for k, member in enumerate(members_of(predictor)):
      if others:
        params, _ = _member_update(member, emb[other], others, prior_scale, [], irt_refit)
        member = member.with_params(params)
      z[out, k] = member.logits(emb[out])[np.arange(out.sum()), col[out]]
  stacked = np.vstack([weight, bias[None, :]])
  spread = stacked.var(1)
  if spread.max() <= PRIOR_FLOOR:                 # a rule shared by every LLM: unit variance
    spread = np.ones_like(spread)
  precision = prior_scale / np.maximum(spread, PRIOR_FLOOR)
  y = np.array([r["correct"] for r in recs], np.float64)
  for j in np.unique(col):
    fitted = map_logistic(z[col == j], y[col == j], stacked[:, j], precision)
    weight[:, j], bias[j] = fitted[:-1], fitted[-1]
  return weight, bias
