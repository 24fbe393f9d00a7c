"""One L2-regularised logistic regression per LLM on the embedding (kind `logreg`).

Fitted with scikit-learn (lbfgs), the inverse regularisation C chosen per
dataset on the validation split (lowest log loss over all models) from `c_grid`.
A model whose training labels are all one class gets a constant logit at its
smoothed train accuracy. Prediction is one [D, M] matmul in JAX.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np

from irt_jax.models import base


@dataclasses.dataclass(frozen=True)
class Spec:
  n_models: int
  input_dim: int
  c_grid: tuple
  max_iter: int


def logits(params, embeddings, spec: Spec, *, train=False, rng=None, query_index=None):
  del spec, train, rng, query_index
  return embeddings.astype(jnp.float32) @ params["w"] + params["b"]


def _fit_one_c(x, train, c, max_iter):
  from sklearn.linear_model import LogisticRegression
  d, m = x.shape[1], train.labels.shape[1]
  w, b = np.zeros((d, m), np.float32), np.zeros(m, np.float32)
  for j in range(m):
    known = train.mask[:, j]
    y = train.labels[known, j]
    if len(np.unique(y)) < 2:  # one class (or none): a constant at the smoothed rate
      rate = (y.sum() + 0.5) / (len(y) + 1.0)
      b[j] = np.log(rate / (1 - rate))
      continue
    clf = LogisticRegression(C=c, max_iter=max_iter).fit(x[known], y)
    w[:, j], b[j] = clf.coef_[0], clf.intercept_[0]
  return {"w": w, "b": b}


def fit(spec: Spec, data, config, rng) -> base.Params:
  del config, rng
  from irt_jax import metrics
  train, val = data.split("train"), data.split("val")
  x, xv = data.embeddings[train.queries], data.embeddings[val.queries]
  best = None
  for c in spec.c_grid:
    params = _fit_one_c(x, train, c, spec.max_iter)
    lg = xv @ params["w"] + params["b"]
    p = 1.0 / (1.0 + np.exp(-lg[val.mask].astype(np.float64)))
    loss = metrics.binary_metrics(p, val.labels[val.mask])["log_loss"]
    if best is None or loss < best[0]:
      best = (loss, params)
  return best[1]


KIND = base.Kind(name="logreg", spec_cls=Spec, fit=fit, logits=logits,
                 description="one L2 logistic regression per LLM on the embedding")
