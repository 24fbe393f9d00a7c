"""The `cluster` kind (models/cluster.py) against a plain scikit-learn k-means
router written here, by hand cases, and through train / checkpoint / load."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.cluster import KMeans

from configs import cluster as cluster_config
from configs import test as test_config
from irt_jax import metrics, models, predictors
from irt_jax.data.io import ResponseData, Split
from irt_jax.models import cluster
from irt_jax import training


def generated(seed=0, n=600, d=16, m=5, groups=4):  # n >= 500: the splits below
  """Queries around `groups` directions; each model's accuracy depends on the group."""
  rng = np.random.default_rng(seed)
  centres = rng.normal(size=(groups, d))
  group = rng.integers(0, groups, n)
  emb = (centres[group] + 0.4 * rng.normal(size=(n, d))).astype(np.float32)
  acc = rng.uniform(0.1, 0.9, size=(groups, m))
  labels = (rng.uniform(size=(n, m)) < acc[group]).astype(np.int8)
  labels[rng.uniform(size=(n, m)) < 0.1] = -1          # some answers unknown
  idx = rng.permutation(n)
  cut = {"train": idx[:400], "val": idx[400:500], "test": idx[500:]}
  splits = {k: Split(v.astype(np.int32), labels[v]) for k, v in cut.items()}
  return ResponseData(name="gen", model_names=tuple(f"m{i}" for i in range(m)),
                      query_ids=tuple(str(i) for i in range(n)), prompts=None, embeddings=emb,
                      benchmark=np.zeros(n, np.int32), benchmark_names=("b",), splits=splits)


class Cfg:
  seed = 3


def spec(k_grid, top_k=1, smoothing=1.0, m=5, d=16):
  return cluster.Spec(n_models=m, input_dim=d, k_grid=tuple(k_grid), top_k=top_k, beta=9.0,
                      smoothing=smoothing, n_init=2)


def plain_router(data, k, seed, smoothing):
  """k-means on unit train embeddings; per cluster each model's (right + s * prior) /
  (known + s); a query takes its KMeans.predict cluster's row."""
  unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)
  train = data.split("train")
  km = KMeans(n_clusters=k, random_state=seed, n_init=2).fit(unit(data.embeddings[train.queries]))
  m = train.labels.shape[1]
  prior = np.array([(train.labels[train.mask[:, j], j] == 1).mean() for j in range(m)])
  table = np.zeros((k, m))
  for c in range(k):
    for j in range(m):
      y = train.labels[(km.labels_ == c) & train.mask[:, j], j]
      table[c, j] = (y.sum() + smoothing * prior[j]) / (len(y) + smoothing)
  return lambda queries: table[km.predict(unit(data.embeddings[queries]))]


def test_matches_a_plain_scikit_learn_kmeans_router():
  data = generated()
  params = cluster.fit(spec([6]), data, Cfg, None)
  test = data.split("test")
  got = np.asarray(jax.nn.sigmoid(cluster.logits(params, jnp.asarray(data.embeddings[test.queries]),
                                                 spec([6]))))
  want = plain_router(data, 6, Cfg.seed, 1.0)(test.queries)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  assert (got.argmax(1) == want.argmax(1)).all()


def test_the_number_of_clusters_is_the_lowest_val_log_loss():
  data = generated(seed=1)
  val = data.split("val")
  losses = {}
  for k in (2, 4, 12):
    p = plain_router(data, k, Cfg.seed, 1.0)(val.queries)
    losses[k] = metrics.binary_metrics(p[val.mask], val.labels[val.mask])["log_loss"]
  params = cluster.fit(spec([2, 4, 12]), data, Cfg, None)
  assert params["centres"].shape[0] == min(losses, key=losses.get)


def test_top_k_mixes_the_near_clusters_by_softmax_of_distance():
  params = {"centres": jnp.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]),
            "accuracy": jnp.array([[0.8, 0.2], [0.4, 0.6], [0.1, 0.9]])}
  q = jnp.array([[1.0, 1.0]])          # unit (0.707, 0.707): squared distances 0.586, 0.586, 3.414
  p = np.asarray(jax.nn.sigmoid(cluster.logits(params, q, spec([3], top_k=2, m=2, d=2))))[0]
  np.testing.assert_allclose(p, [0.6, 0.4], rtol=1e-5)       # two equal weights
  p3 = np.asarray(jax.nn.sigmoid(cluster.logits(params, q, spec([3], top_k=3, m=2, d=2))))[0]
  w = np.exp(-9.0 * np.array([0.5858, 0.5858, 3.4142]) / 2)
  w /= w.sum()
  np.testing.assert_allclose(p3, w @ np.array([[0.8, 0.2], [0.4, 0.6], [0.1, 0.9]]), rtol=1e-3)


def test_smoothed_accuracy_and_the_balance_score_by_hand():
  train = Split(np.arange(4, dtype=np.int32), np.array([[1, 0], [1, -1], [0, 1], [1, 1]], np.int8))
  # priors: model 0 3/4, model 1 2/3; cluster 0 = rows 0, 1; cluster 1 = rows 2, 3.
  acc = cluster.cluster_accuracy(np.array([0, 0, 1, 1]), train, 2, smoothing=1.0)
  np.testing.assert_allclose(acc, [[(2 + 0.75) / 3, (0 + 2 / 3) / 2],
                                   [(1 + 0.75) / 3, (2 + 2 / 3) / 3]], rtol=1e-6)
  # accuracy 0.5, 0.7, 0.9 -> 0, 0.5, 1; cost 1, 2, 4 -> 0.75, 0.5, 0.
  got = cluster.balance_scores([0.5, 0.7, 0.9], [1.0, 2.0, 4.0], alpha=0.6)
  np.testing.assert_allclose(got, [0.4 * 0.75, 0.6 * 0.5 + 0.4 * 0.5, 0.6])


@pytest.mark.slow  # trains a run through the harness
def test_trains_checkpoints_and_loads_like_any_kind(tmp_path):
  config = cluster_config.get_config()
  config.data = test_config.get_config().data
  config.model.k_grid = (4, 8)
  summary = training.run(config, str(tmp_path))
  run = predictors.load(str(tmp_path))
  assert run.kind.name == "cluster" and run.model_names == list(summary["data"].model_names)
  data = summary["data"]
  test = data.split("test")
  spec_ = models.get("cluster").spec(config.model, data.n_models, data.embed_dim)
  direct = cluster.logits(summary["state"]["params"], jnp.asarray(data.embeddings[test.queries]),
                          spec_)
  np.testing.assert_allclose(run.predictor.logits(data.embeddings[test.queries]), direct,
                             rtol=1e-5, atol=1e-5)
  assert run.predictor.params["centres"].shape[0] in (4, 8)


def test_a_grid_larger_than_the_training_queries_is_a_config_error():
  with pytest.raises(ValueError, match="k_grid"):
    cluster.fit(spec([10_000]), generated(), Cfg, None)
