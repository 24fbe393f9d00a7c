"""The tuned `knn` kind: distance weighting and smoothing, chosen with k on val."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import knn as knn_config
from irt_jax import metrics, models
from irt_jax.models import base, knn
from tests.test_cluster import generated

TRAIN = np.array([[1, 0], [0.9, 0.1], [0, 1], [-1, 0]], np.float32)
TRAIN /= np.linalg.norm(TRAIN, axis=1, keepdims=True)
LABELS = np.array([[1, 0], [1, 1], [0, 1], [0, 0]], np.float32)
MASK = np.array([[1, 1], [1, 0], [1, 1], [1, 1]], np.float32)  # model 1 unknown on q1


def plain_knn(train_emb, labels, mask, queries, k, weighting, s):
  """Numpy, one query at a time: cosine top-k, weights, smoothed weighted mean."""
  unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)
  prior = (labels * mask).sum(0) / mask.sum(0)
  out = []
  for q in unit(np.asarray(queries, np.float64)):
    cos = unit(train_emb) @ q
    near = np.argsort(-cos, kind="stable")[:k]
    w = 1 / np.maximum(1 - cos[near], 1e-6) if weighting == "distance" else np.ones(k)
    known = mask[near] * w[:, None]
    out.append(((labels[near] * known).sum(0) + s * prior) / (known.sum(0) + s))
  return np.array(out)


def test_distance_weighting_and_smoothing_by_hand():
  spec = knn.Spec(n_models=2, input_dim=2, k_grid=(2,))
  params = knn._params(TRAIN, LABELS, MASK, 2, "distance", 2.0)
  q = np.array([[1.0, 0.05]])
  p = np.asarray(jax.nn.sigmoid(knn.logits(params, jnp.asarray(q), spec)))[0]
  # q0, q1 nearest; cos 0.99875 and 0.99712 -> weights 1 / 0.00125 and 1 / 0.00288.
  cos = TRAIN[:2] @ (q[0] / np.linalg.norm(q[0]))
  w = 1 / (1 - cos)
  want0 = (w[0] + w[1] + 2 * 0.5) / (w[0] + w[1] + 2)     # model 0: both right, prior 1/2
  want1 = (0 + 2 / 3) / (w[0] + 2)                         # model 1: only q0 known, wrong
  np.testing.assert_allclose(p, [want0, want1], rtol=1e-4)
  np.testing.assert_allclose(p, plain_knn(TRAIN, LABELS, MASK, q, 2, "distance", 2.0)[0],
                             rtol=1e-4)


def test_params_saved_before_tuning_read_as_uniform_with_one_pseudo_answer():
  spec = knn.Spec(n_models=2, input_dim=2, k_grid=(3,))
  new = knn._params(TRAIN, LABELS, MASK, 3, "uniform", 1.0)
  old = {k: v for k, v in new.items() if k not in ("distance", "smoothing")}
  q = jnp.array([[0.3, 1.0], [1.0, 0.0]])
  np.testing.assert_array_equal(knn.logits(old, q, spec), knn.logits(new, q, spec))
  # and a config without the new fields still builds a spec (an older run's config)
  assert models.get("knn").spec({"name": "knn", "k_grid": [5]}, 2, 2).smoothing_grid == (1.0,)


def test_k_weighting_and_smoothing_are_the_lowest_val_log_loss():
  data = generated(seed=2)
  config = knn_config.get_config()
  config.model.k_grid = (3, 15, 60)
  spec = models.get("knn").spec(config.model, data.n_models, data.embed_dim)
  train, val = data.split("train"), data.split("val")
  emb = data.embeddings[train.queries]
  labels = np.where(train.mask, train.labels, 0).astype(np.float64)
  losses = {}
  for k in spec.k_grid:
    for w in spec.weighting_grid:
      for s in spec.smoothing_grid:
        p = plain_knn(emb, labels, train.mask.astype(np.float64), data.embeddings[val.queries],
                      k, w, s)
        losses[(k, w, s)] = metrics.binary_metrics(p[val.mask], val.labels[val.mask])["log_loss"]
  params = knn.fit(spec, data, config, None)
  chosen = (int(params["k"]), knn.WEIGHTINGS[int(params["distance"])], float(params["smoothing"]))
  assert chosen == min(losses, key=losses.get)
  assert len(losses) == 3 * 2 * 4


def test_an_unknown_weighting_is_a_config_error():
  with pytest.raises(base.ConfigError, match="weighting_grid"):
    knn._params(TRAIN, LABELS, MASK, 2, "gaussian", 1.0)


def test_added_answers_count_as_neighbours_for_their_llm_only_by_hand():
  spec = knn.Spec(n_models=3, input_dim=2, k_grid=(2,))
  base_params = knn._params(TRAIN, LABELS, MASK, 2, "uniform", 1.0)
  # A new LLM (column 2) answered twice: right at q0's direction, wrong at (-1, 0.2).
  added = np.array([[1.0, 0.0], [-1.0, 0.2]], np.float32)
  params = knn.with_answers(base_params, added, np.array([2, 2]), np.array([1, 0]), 3)
  q = jnp.array([[1.0, 0.05], [0.0, 1.0]])
  p = np.asarray(jax.nn.sigmoid(knn.logits(params, q, spec)))
  old = np.asarray(jax.nn.sigmoid(knn.logits(base_params, q, knn.Spec(2, 2, (2,)))))
  np.testing.assert_array_equal(p[:, :2], old)          # the trained LLMs exactly as they were
  # Query 0: its 2nd nearest training query is q1 (cos 0.99712); the added (1, 0) has cos
  # 0.99875 >= that, so it counts: (1 + 1 * prior) / (1 + 1), prior 1/2 (one right of two).
  assert p[0, 2] == pytest.approx((1 + 0.5) / 2, rel=1e-5)
  # Query 1 (0, 1): nearest q2 (cos 1) and q1 (0.110); the added rows have cos 0 and 0.196:
  # the second counts (0.196 >= 0.110), wrong: (0 + 0.5) / (1 + 1).
  assert p[1, 2] == pytest.approx(0.25, rel=1e-5)
  # A wrong variant that adds the rows to the training neighbourhood would change model 0
  # and 1 at query 0 (the added row displaces q1); asserted exact above.


def test_added_answers_move_the_answering_llms_prior_and_accumulate():
  spec = knn.Spec(n_models=2, input_dim=2, k_grid=(2,))
  base_params = knn._params(TRAIN, LABELS, MASK, 2, "uniform", 1.0)
  far = np.array([[0.0, -1.0]] * 4, np.float32)        # far from every query below
  once = knn.with_answers(base_params, far[:2], np.array([0, 0]), np.array([0, 0]), 2)
  twice = knn.with_answers(once, far[2:], np.array([0, 0]), np.array([0, 0]), 2)
  assert twice["added_emb"].shape == (4, 2)
  # Model 0: 2 right of 4 trained, then 4 wrong added: prior 2 / 8; model 1 keeps 1 / 3.
  np.testing.assert_allclose(twice["prior"], [2 / 8, 1 / 3], rtol=1e-6)
  q = jnp.array([[1.0, 0.05]])
  p = np.asarray(jax.nn.sigmoid(knn.logits(twice, q, spec)))[0]
  assert p[0] == pytest.approx((2 + 2 / 8) / (2 + 1), rel=1e-5)   # q0, q1 right; new prior
  assert p[1] == pytest.approx((0 + 1 / 3) / (1 + 1), rel=1e-5)   # q0 known only; unchanged


def test_an_answer_to_a_training_query_replaces_that_cell():
  spec = knn.Spec(n_models=2, input_dim=2, k_grid=(2,))
  base_params = knn._params(TRAIN, LABELS, MASK, 2, "uniform", 1.0)
  # Model 0 now fails q0 (trained: right); model 1 answers q1 right (unknown in training).
  params = knn.with_answers(base_params, TRAIN[:2] * 3.0, np.array([0, 1]), np.array([0, 1]), 2)
  assert "added_emb" not in params                         # nothing appended
  assert params["labels"][0, 0] == 0 and params["labels"][1, 1] == 1 and params["mask"][1, 1] == 1
  np.testing.assert_array_equal(np.asarray(base_params["labels"])[0, 0], 1)  # input untouched
  np.testing.assert_allclose(params["prior"], [1 / 4, 2 / 4], rtol=1e-6)
  q = jnp.array([[1.0, 0.05]])
  p = np.asarray(jax.nn.sigmoid(knn.logits(params, q, spec)))[0]
  # q0, q1 nearest: model 0 wrong, right -> (1 + 1/4) / 3; model 1 wrong, right -> (1 + 1/2) / 3.
  np.testing.assert_allclose(p, [(1 + 1 / 4) / 3, (1 + 1 / 2) / 3], rtol=1e-5)
