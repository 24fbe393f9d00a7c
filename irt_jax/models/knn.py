"""Nearest-neighbour vote (kind `knn`): the floor a learned router must clear.

P(model m answers q) is the smoothed mean of m's labels over the k training
queries most similar to q (cosine of the embeddings) among those where m's
answer is known: (sum of w * labels + s * prior_m) / (sum of w + s), prior_m
being m's train accuracy, so an empty neighbourhood falls back to the prior and
no logit is infinite. The weights w are 1 (`uniform`) or the inverse cosine
distance 1 / max(1 - cos, 1e-6) (`distance`, scikit-learn's weights='distance'
on that distance); s is the smoothing pseudo-count. k, the weighting and s are
chosen together on the validation split (lowest log loss) from `k_grid`,
`weighting_grid` and `smoothing_grid`, as a well-tuned kNN router is tuned
(arXiv 2505.12601); the predictor holds the normalised training embeddings and
labels. Runs saved before the weighting and smoothing were tuned read as uniform
with s = 1.

Answers that arrive after training (feedback, or a new LLM's few answers) are
learnt by `with_answers`: an answer to a training query replaces that LLM's
label there (the newest answer is what the LLM does now); an answer to any
other query becomes an added neighbour, a row labelled for the one LLM that
answered, counted for it wherever it is at least as similar to the query as the
k-th nearest training query. So the neighbourhoods, and every LLM without new
answers, stay exactly as trained.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from irt_jax.models import base


@dataclasses.dataclass(frozen=True)
class Spec:
  n_models: int
  input_dim: int
  k_grid: tuple
  weighting_grid: tuple = ("uniform",)
  smoothing_grid: tuple = (1.0,)


def _normalise(x):
  return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def logits(params, embeddings, spec: Spec, *, train=False, rng=None, query_index=None):
  del train, rng, query_index
  k_max = min(max(spec.k_grid), params["train_emb"].shape[0])
  sims = _normalise(embeddings.astype(jnp.float32)) @ params["train_emb"].T    # [B, N]
  top, idx = jax.lax.top_k(sims, k_max)                                        # [B, k_max]
  within = (jnp.arange(k_max) < params["k"])[None, :, None]                    # rank < k
  mask = params["mask"][idx] * within * _weights(params, top)[..., None]      # [B, k_max, M]
  votes, count = (params["labels"][idx] * mask).sum(1), mask.sum(1)
  if "added_emb" in params:
    near = _added_weights(params, embeddings, top)
    votes = votes + near @ (params["added_labels"] * params["added_mask"])
    count = count + near @ params["added_mask"]
  s = params.get("smoothing", 1.0)
  p = (votes + s * params["prior"]) / (count + s)
  return base.sigmoid_logit(p)


def _weights(params, sims):
  """Each neighbour's vote weight from its cosine: 1 (`uniform`) or the inverse
  cosine distance (`distance`)."""
  inverse = 1.0 / jnp.maximum(1.0 - sims, 1e-6)
  return jnp.where(params.get("distance", 0) > 0, inverse, jnp.ones_like(sims))


def _added_weights(params, embeddings, top):
  """[B, A] weight of each added row for each query: its neighbour weight where
  it is at least as similar as the k-th nearest training query, else 0."""
  sims = _normalise(embeddings.astype(jnp.float32)) @ params["added_emb"].T       # [B, A]
  kth = jnp.take_along_axis(top, jnp.full((top.shape[0], 1), params["k"] - 1), axis=1)
  return jnp.where(sims >= kth, _weights(params, sims), 0.0)


SAME_QUERY = 1e-6   # cosine within this of 1: the answer is to that training query


def _training_rows(train_emb, emb) -> np.ndarray:
  """[A] the training row each normalised embedding repeats, or -1."""
  out, train_t = np.full(len(emb), -1), np.asarray(train_emb).T
  for start in range(0, len(emb), 1024):
    sims = emb[start:start + 1024] @ train_t
    best = sims.argmax(1)
    hit = sims[np.arange(len(best)), best] >= 1.0 - SAME_QUERY
    out[start:start + 1024] = np.where(hit, best, -1)
  return out


def with_answers(params, embeddings, model_index, correct, n_models: int) -> dict:
  """The kNN's params having learnt answers (`embeddings` [A, D], the answering
  LLM's column `model_index` [A], `correct` [A] in {0, 1}), for `n_models` LLMs
  (more than trained: the new ones' columns are appended, known only where they
  answered). An answer to a training query sets that cell (later answers win);
  the others become added rows. Each answering LLM's prior becomes its accuracy
  over its training cells and added rows; the others' is unchanged."""
  params = dict(params)
  emb = np.asarray(_normalise(jnp.asarray(embeddings, jnp.float32)))
  model_index, correct = np.asarray(model_index), np.asarray(correct, np.float32)
  grow = n_models - params["labels"].shape[1]
  pad = lambda x: np.pad(np.asarray(x, np.float32), ((0, 0), (0, grow)))
  params["labels"], params["mask"] = pad(params["labels"]), pad(params["mask"])
  rows = _training_rows(params["train_emb"], emb)
  seen = rows >= 0
  params["labels"][rows[seen], model_index[seen]] = correct[seen]
  params["mask"][rows[seen], model_index[seen]] = 1.0
  new = np.flatnonzero(~seen)
  labels = np.zeros((len(new), n_models), np.float32)
  mask = np.zeros_like(labels)
  labels[np.arange(len(new)), model_index[new]] = correct[new]
  mask[np.arange(len(new)), model_index[new]] = 1.0
  if "added_emb" in params:
    emb_added = np.vstack([params["added_emb"], emb[new]])
    labels = np.vstack([pad(params["added_labels"]), labels])
    mask = np.vstack([pad(params["added_mask"]), mask])
  else:
    emb_added = emb[new]
  if len(emb_added):
    params.update(added_emb=emb_added, added_labels=labels, added_mask=mask)
  right = (params["labels"] * params["mask"]).sum(0) + (labels * mask).sum(0)
  total = params["mask"].sum(0) + mask.sum(0)
  prior = np.concatenate([np.asarray(params["prior"], np.float32), np.full(grow, 0.5, np.float32)])
  answered = np.isin(np.arange(n_models), model_index)
  prior[answered] = right[answered] / np.maximum(total[answered], 1.0)
  params["prior"] = prior.astype(np.float32)
  return params


WEIGHTINGS = ("uniform", "distance")


def _params(train_emb, labels, mask, k, weighting="uniform", smoothing=1.0):
  if weighting not in WEIGHTINGS:
    raise base.ConfigError(f"config.model.weighting_grid: unknown weighting {weighting!r}; "
                           f"valid: {', '.join(WEIGHTINGS)}")
  prior = (labels * mask).sum(0) / np.maximum(mask.sum(0), 1.0)
  return {"train_emb": train_emb, "labels": labels, "mask": mask,
          "prior": prior.astype(np.float32), "k": np.int32(k),
          "distance": np.int32(weighting == "distance"), "smoothing": np.float32(smoothing)}


def fit(spec: Spec, data, config, rng) -> base.Params:
  del config, rng
  from irt_jax import metrics
  train, val = data.split("train"), data.split("val")
  emb = np.asarray(_normalise(jnp.asarray(data.embeddings[train.queries])))
  labels = np.where(train.mask, train.labels, 0).astype(np.float32)
  mask = train.mask.astype(np.float32)
  best = None
  score = jax.jit(lambda p, v: logits(p, v, spec))
  grid = [(k, w, s) for k in spec.k_grid for w in spec.weighting_grid
          for s in spec.smoothing_grid]
  for setting in grid:
    params = _params(emb, labels, mask, *setting)
    lg = np.asarray(score(params, data.embeddings[val.queries]))
    p = 1.0 / (1.0 + np.exp(-lg[val.mask].astype(np.float64)))
    loss = metrics.binary_metrics(p, val.labels[val.mask])["log_loss"]
    if best is None or loss < best[0]:
      best = (loss, setting)
  return _params(emb, labels, mask, *best[1])


KIND = base.Kind(name="knn", spec_cls=Spec, fit=fit, logits=logits,
                 description="mean label of the k nearest training queries (cosine)")
