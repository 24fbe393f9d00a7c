"""The model's pure functions against a NumPy reference, masking and gating."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from irt_jax.models import losses
from irt_jax import predictors
from irt_jax.models import irtnet as model_lib
from irt_jax.models import masks


def _spec(**kw):
  base = dict(n_models=5, input_dim=12, n_experts=3, n_shared=1, top_k=3, hidden_dim=8,
              output_dim=6, ability_dim=4, dropout=0.0, input_noise=0.0, init="torch")
  base.update(kw)
  return model_lib.ModelSpec(**base)


def _numpy_logits(p, v, spec):
  """IrtNet written out expert by expert, as the paper describes it."""
  p = jax.tree.map(np.asarray, p)
  ex = p["experts"]

  def expert(i, x):
    h = np.maximum(x @ ex["w1"][:, i, :] + ex["b1"][i], 0.0)
    return h @ ex["w2"][i] + ex["b2"][i]

  z = v @ p["gate"]["w"] + p["gate"]["b"]
  gates = np.exp(z - z.max(1, keepdims=True))
  gates /= gates.sum(1, keepdims=True)
  if spec.top_k < spec.n_experts:
    kth = np.sort(gates, axis=1)[:, -spec.top_k][:, None]
    gates = np.where(gates >= kth, gates, 0.0)
    gates /= gates.sum(1, keepdims=True)
  h = sum(expert(i, v) for i in range(spec.n_shared))
  for j in range(spec.n_experts):
    h = h + gates[:, j:j + 1] * expert(spec.n_shared + j, v)
  a = h @ p["heads"]["a_w"] + p["heads"]["a_b"]
  b = h @ p["heads"]["b_w"] + p["heads"]["b_b"]
  out = np.zeros((len(v), spec.n_models))
  for q in range(len(v)):
    for m in range(spec.n_models):
      out[q, m] = a[q] @ p["theta"][m] - b[q]
  return out


@pytest.mark.slow
@pytest.mark.parametrize("kw", [{}, {"top_k": 2}, {"n_shared": 2}, {"init": "lecun"}])
def test_logits_match_numpy_reference(kw):
  spec = _spec(**kw)
  params = model_lib.init_params(jax.random.PRNGKey(0), spec)
  v = np.random.default_rng(0).normal(size=(7, spec.input_dim)).astype(np.float32)
  got = np.asarray(model_lib.predict_logits(params, v, spec))
  want = _numpy_logits(params, v.astype(np.float64), spec)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
  # The prediction form (heads and abilities folded into the second expert layer)
  # is the same function.
  folded = model_lib.fold_for_prediction(params, spec)
  assert folded["w2"].shape == (spec.n_shared + spec.n_experts, spec.hidden_dim, spec.n_models + 1)
  np.testing.assert_allclose(np.asarray(model_lib.folded_logits(folded, v, spec)), want,
                             rtol=1e-4, atol=1e-4)


def test_torch_default_init_ranges():
  spec = _spec(input_dim=64, hidden_dim=32)
  p = model_lib.init_params(jax.random.PRNGKey(1), spec)
  bound = 1 / np.sqrt(64)
  w1 = np.asarray(p["experts"]["w1"])
  assert np.abs(w1).max() <= bound and np.abs(w1).max() > 0.9 * bound
  theta = np.asarray(p["theta"])
  assert abs(theta.std() - 1.0) < 0.35  # nn.Embedding's N(0, 1)


@pytest.mark.slow
def test_top_k_gate_is_sparse_and_normalised():
  spec = _spec(n_experts=6, top_k=2)
  params = model_lib.init_params(jax.random.PRNGKey(2), spec)
  v = jax.random.normal(jax.random.PRNGKey(3), (9, spec.input_dim)) * 5
  g = np.asarray(model_lib.gate_weights(params["gate"], v, 2))
  assert ((g > 0).sum(1) == 2).all()
  np.testing.assert_allclose(g.sum(1), 1.0, rtol=1e-6)
  dense = np.asarray(model_lib.gate_weights(params["gate"], v, 6))
  np.testing.assert_allclose(dense.sum(1), 1.0, rtol=1e-6)
  assert (dense > 0).all()


def test_invalid_top_k_is_refused():
  with pytest.raises(ValueError, match="top_k"):
    model_lib.init_params(jax.random.PRNGKey(0), _spec(top_k=7))


def test_masked_cells_change_neither_loss_nor_gradients():
  spec = _spec()
  params = model_lib.init_params(jax.random.PRNGKey(4), spec)
  rng = np.random.default_rng(1)
  v = rng.normal(size=(6, spec.input_dim)).astype(np.float32)
  labels = rng.integers(0, 2, size=(6, spec.n_models)).astype(np.float32)
  mask = rng.random((6, spec.n_models)) < 0.6

  def loss(p, lab):
    return losses.masked_bce_sum(model_lib.predict_logits(p, v, spec), lab, mask)

  base_val, base_grad = jax.value_and_grad(loss)(params, labels)
  scrambled = np.where(mask, labels, np.nan)  # garbage (even NaN) in unknown cells
  val, grad = jax.value_and_grad(loss)(params, scrambled)
  assert float(val) == float(base_val)
  jax.tree.map(np.testing.assert_array_equal, grad, base_grad)
  # And the masked loss equals the BCE over observed cells alone.
  logits = np.asarray(model_lib.predict_logits(params, v, spec), np.float64)
  p = 1 / (1 + np.exp(-logits))
  want = -(labels * np.log(p) + (1 - labels) * np.log(1 - p))[mask].sum()
  np.testing.assert_allclose(float(base_val), want, rtol=1e-5)


def test_training_noise_is_per_query_and_off_at_eval():
  spec = _spec(dropout=0.5, input_noise=0.05)
  params = model_lib.init_params(jax.random.PRNGKey(5), spec)
  v = np.random.default_rng(2).normal(size=(4, spec.input_dim)).astype(np.float32)
  rng = jax.random.PRNGKey(9)
  idx = jnp.arange(4)
  train = model_lib.predict_logits(params, v, spec, train=True, rng=rng, query_index=idx)
  again = model_lib.predict_logits(params, v, spec, train=True, rng=rng, query_index=idx)
  np.testing.assert_array_equal(train, again)  # deterministic given (rng, query)
  evaluated = model_lib.predict_logits(params, v, spec)
  assert not np.allclose(train, evaluated)
  # A query's noise depends on its own index only, not on its position in the block.
  swapped = model_lib.predict_logits(params, v[::-1], spec, train=True, rng=rng,
                                     query_index=idx[::-1])
  np.testing.assert_allclose(np.asarray(swapped)[::-1], train, rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match="rng"):
    model_lib.predict_logits(params, v, spec, train=True)


@pytest.mark.parametrize("p,shape", [(0.9, (3, 8)), (0.5, (40, 512)), (0.123, (7,)), (1.0, (2, 5))])
def test_fused_dropout_masks_are_jax_bernoulli_bit_for_bit(p, shape):
  # The unrolled Threefry must reproduce jax.random.bernoulli exactly (a wrong
  # rotation, key schedule or counter layout would give other, equally random, bits).
  rng = jax.random.PRNGKey(11)
  raw = jax.vmap(lambda i: jax.random.fold_in(rng, i))(jnp.arange(6))  # uint32 [6, 2]
  want = jax.vmap(lambda k: jax.random.bernoulli(k, p, shape))(raw)
  np.testing.assert_array_equal(jax.jit(lambda k: masks.bernoulli_rows(k, p, shape))(raw), want)
  typed = jax.random.wrap_key_data(raw)
  np.testing.assert_array_equal(masks.bernoulli_rows(typed, p, shape), want)
  # Another key implementation takes jax.random.bernoulli itself.
  rbg = jax.vmap(lambda i: jax.random.fold_in(jax.random.key(3, impl="rbg"), i))(jnp.arange(4))
  np.testing.assert_array_equal(masks.bernoulli_rows(rbg, p, shape),
                                jax.vmap(lambda k: jax.random.bernoulli(k, p, shape))(rbg))


def test_regularisation_noise_keeps_the_per_query_random_stream():
  spec = _spec(dropout=0.3, input_noise=0.05)
  rng, idx = jax.random.PRNGKey(4), jnp.array([0, 5, 2, 99])

  def per_query(i):  # the stream as first written: one query at a time
    k_noise, k_drop = jax.random.split(jax.random.fold_in(rng, i))
    return (spec.input_noise * jax.random.normal(k_noise, (spec.input_dim,)),
            jax.random.bernoulli(k_drop, 1.0 - spec.dropout,
                                 (spec.n_shared + spec.n_experts, spec.hidden_dim)))

  want_noise, want_keep = jax.vmap(per_query)(idx)
  noise, keep = model_lib.regularisation_noise(rng, idx, spec)
  np.testing.assert_array_equal(noise, want_noise)
  np.testing.assert_array_equal(keep, want_keep)


def test_predict_proba_chunks_agree_with_one_call():
  spec = _spec()
  params = model_lib.init_params(jax.random.PRNGKey(6), spec)
  v = np.random.default_rng(3).normal(size=(11, spec.input_dim)).astype(np.float32)
  predictor = predictors.Predictor(kind=model_lib.KIND, spec=spec, params=params,
                                   model_names=tuple("abcde"))
  whole = predictor.logits(v)  # 11 rows: padded up to a 64-row bucket
  one_by_one = np.concatenate([predictor.logits(v[i:i + 1]) for i in range(11)])
  np.testing.assert_allclose(whole, one_by_one, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(whole, model_lib.predict_logits(params, v, spec), rtol=1e-5,
                             atol=1e-6)
  assert whole.shape == (11, 5)
  p = predictor.proba(v)
  assert ((p > 0) & (p < 1)).all()


def test_predictor_buckets_batch_sizes():
  """Any batch size runs through one of a few padded programs (powers of two up to the
  chunk), and a row's logits do not depend on the batch it came in."""
  spec = _spec(n_models=7)  # a spec no other test uses: its jit cache starts empty
  params = model_lib.init_params(jax.random.PRNGKey(8), spec)
  predictor = predictors.Predictor(kind=model_lib.KIND, spec=spec, params=params,
                                   model_names=tuple("abcdefg"))
  v = np.random.default_rng(5).normal(size=(20, spec.input_dim)).astype(np.float32)
  singles = np.concatenate([predictor.logits(v[i:i + 1], chunk=8) for i in range(20)])
  for n in range(1, 21):
    got = predictor.logits(v[:n], chunk=8)
    assert got.shape == (n, 7)
    np.testing.assert_allclose(got, singles[:n], rtol=1e-5, atol=1e-5)
  # 1..20 rows in chunks of 8: parts of 1..8 rows, padded to 1, 2, 4 or 8.
  assert predictors._jitted_logits(model_lib.KIND, spec)._cache_size() == 4
  assert [predictors.bucket(r, 8) for r in (1, 2, 3, 5, 8)] == [1, 2, 4, 8, 8]
  assert predictor.logits(v[:0]).shape == (0, 7)


def test_identified_difficulty_is_shift_invariant():
  """Shifting every ability and compensating b leaves predictions and difficulty alone."""
  spec = _spec()
  params = model_lib.init_params(jax.random.PRNGKey(7), spec)
  v = np.random.default_rng(4).normal(size=(5, spec.input_dim)).astype(np.float32)
  _, d0 = model_lib.query_difficulty(params, v, spec)
  shift = jnp.ones(spec.ability_dim)
  moved = jax.tree.map(lambda x: x, params)
  moved["theta"] = params["theta"] + shift
  # a.(theta + s) - b' = a.theta - b  <=>  b' = b + a.s; a is linear in h, so shift b_w, b_b.
  moved["heads"] = dict(params["heads"], b_w=params["heads"]["b_w"] + params["heads"]["a_w"] @ shift,
                        b_b=params["heads"]["b_b"] + params["heads"]["a_b"] @ shift)
  np.testing.assert_allclose(model_lib.predict_logits(moved, v, spec),
                             model_lib.predict_logits(params, v, spec), rtol=1e-4, atol=1e-4)
  _, d1 = model_lib.query_difficulty(moved, v, spec)
  np.testing.assert_allclose(d1, d0, rtol=1e-4, atol=1e-4)
