"""Training: recovery of a known truth, device-count invariance, determinism,
schedules, optimiser semantics, failure on non-finite loss."""

import functools
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from irt_jax.training import batches
from irt_jax.data import io as data_lib
from irt_jax import metrics
from irt_jax.models import irtnet as model_lib
from irt_jax.training import parallel
from irt_jax import predictors
from irt_jax.data import synthetic
from irt_jax import training


@pytest.mark.slow
def test_training_recovers_the_synthetic_truth(config, tmp_path):
  config.data.synthetic.update(n_queries=1500, n_models=16)
  config.model.update(n_experts=4, top_k=4, hidden_dim=64, output_dim=32, ability_dim=6)
  config.train.num_epochs = 8
  workdir = str(tmp_path)
  summary = training.train_and_evaluate(config, workdir)
  run = predictors.load(workdir, "best")
  truth = synthetic.load_truth(os.path.join(workdir, "synthetic_data"))
  test = summary["data"].split("test")  # held-out queries, never trained on
  _, difficulty = model_lib.query_difficulty(run.predictor.params, summary["data"].embeddings[test.queries],
                                             run.predictor.spec)
  assert metrics.spearman(difficulty, truth["difficulty"][test.queries]) >= 0.9
  proba = run.predictor.proba(summary["data"].embeddings[test.queries])
  labels = test.labels[test.mask]
  accuracy = ((proba[test.mask] > 0.5) == (labels == 1)).mean()
  majority = max(labels.mean(), 1 - labels.mean())
  assert accuracy > majority + 0.15
  # Learned abilities separate the model families the generator drew.
  theta = np.asarray(run.predictor.params["theta"])
  family = truth["family"]
  centroids = np.stack([theta[family == f].mean(0) for f in np.unique(family)])
  nearest = np.argmin(((theta[:, None] - centroids[None]) ** 2).sum(-1), axis=1)
  assert (nearest == family).mean() >= 0.75


def _step_on(n_devices, spec, optimizer, host_state, block, rng):
  devices = jax.local_devices()[:n_devices]
  step = training.pmap_train_step(model_lib.KIND, spec, optimizer, devices=devices, donate=False)
  new_state, metrics = step(parallel.replicate(host_state, devices), parallel.shard(block, n_devices),
                            rng)
  return parallel.unreplicate(new_state), parallel.unreplicate(metrics)


@pytest.mark.slow
def test_four_device_step_equals_one_device_step(synthetic_dir):
  assert jax.local_device_count() == 4
  data = data_lib.load_dataset(synthetic_dir)
  spec = model_lib.ModelSpec(n_models=data.n_models, input_dim=data.embed_dim, n_experts=3,
                             top_k=2, hidden_dim=16, output_dim=8, ability_dim=4,
                             dropout=0.5, input_noise=0.05, init="torch", n_shared=1)
  optimizer = training.make_optimizer(__import__("configs.irtnet", fromlist=["x"]).get_config().optim)
  host_state = jax.device_get(training.init_state(jax.random.PRNGKey(0), model_lib.KIND, spec, optimizer))
  # 10 rows: uneven masks per device (sparse data) plus padding rows.
  block = next(batches.iterate(data.split("train"), data.embeddings, 12, seed=0))
  block["mask"][10:] = False
  rng = jax.random.PRNGKey(7)
  one, m1 = _step_on(1, spec, optimizer, host_state, block, rng)
  four, m4 = _step_on(4, spec, optimizer, host_state, block, rng)
  for k in m1:
    np.testing.assert_allclose(m4[k], m1[k], rtol=1e-5)
  jax.tree.map(functools.partial(np.testing.assert_allclose, rtol=2e-5, atol=1e-7),
               four.params, one.params)
  assert not np.allclose(one.params["theta"], host_state.params["theta"])


@pytest.mark.slow
def test_same_config_and_seed_give_the_same_numbers(config, tmp_path):
  config.train.num_epochs = 2
  a = training.train_and_evaluate(config, str(tmp_path / "a"))
  b = training.train_and_evaluate(config, str(tmp_path / "b"))
  strip = lambda h: [{k: v for k, v in r.items() if k not in ("seconds", "steps_per_second")}
                     for r in h]
  assert strip(a["history"]) == strip(b["history"])
  jax.tree.map(np.testing.assert_array_equal, a["state"].params, b["state"].params)
  config.seed = 1
  c = training.train_and_evaluate(config, str(tmp_path / "c"))
  assert not np.allclose(c["state"].params["theta"], a["state"].params["theta"])


def test_rerunning_a_finished_run_changes_nothing(config, tmp_path):
  config.train.num_epochs = 2
  first = training.train_and_evaluate(config, str(tmp_path))
  again = training.train_and_evaluate(config, str(tmp_path))
  jax.tree.map(np.testing.assert_array_equal, again["state"].params, first["state"].params)
  assert again["history"] == first["history"]


def test_resuming_with_another_config_is_refused(config, tmp_path):
  config.train.num_epochs = 1
  training.train_and_evaluate(config, str(tmp_path))
  config.optim.lr = 0.5
  with pytest.raises(training.TrainingError, match=r"another config \(optim\.lr: 0\.01 -> 0\.5\)"):
    training.train_and_evaluate(config, str(tmp_path))


def test_non_finite_loss_stops_training_before_a_checkpoint(config, tmp_path):
  config.optim.lr = 1e30
  config.train.num_epochs = 3
  with pytest.raises(training.TrainingError, match="non-finite training loss"):
    training.train_and_evaluate(config, str(tmp_path))
  ckpt_dir = tmp_path / "checkpoints"
  finished = [p for p in os.listdir(ckpt_dir) if p.isdigit()] if ckpt_dir.exists() else []
  assert finished == []


def test_plateau_follows_torch_reduce_lr_on_plateau():
  p = training.Plateau(factor=0.1, patience=2, threshold=1e-4)
  cuts = [p.update(x) for x in [1.0, 0.9, 0.95, 0.9, 0.89999, 0.91, 0.5, 0.6]]
  # bad epochs: 0.95 (1), 0.9 (2), 0.89999 (3 > patience: cut, reset), 0.91 (1), 0.5 good.
  assert cuts == [False, False, False, False, True, False, False, False]


def test_early_stopping_keeps_the_first_best_epoch():
  e = training.EarlyStopping(patience=3)
  stops = [e.update(acc, step=10 * i, epoch=i) for i, acc in enumerate([0.5, 0.7, 0.7, 0.6, 0.69])]
  assert stops == [False, False, False, False, True]
  assert (e.best, e.best_epoch, e.best_step) == (0.7, 1, 10)


def test_optimizer_is_torch_adam_with_coupled_weight_decay(config):
  """One step against torch.optim.Adam's update rule, written in NumPy."""
  config.optim.update(lr=0.01, weight_decay=0.1)
  opt = training.make_optimizer(config.optim)
  w = np.array([1.0, -2.0, 0.5], np.float32)
  grads = [np.array([0.3, -0.1, 0.0], np.float32), np.array([-0.2, 0.4, 0.1], np.float32)]
  state = opt.init(w)
  m = v = np.zeros(3)
  ref = w.astype(np.float64)
  x = jnp.asarray(w)
  for t, g in enumerate(grads, start=1):
    gg = g + 0.1 * ref                       # torch: grad = grad + weight_decay * param
    m = 0.9 * m + 0.1 * gg
    v = 0.999 * v + 0.001 * gg ** 2
    ref = ref - 0.01 * (m / (1 - 0.9 ** t)) / (np.sqrt(v / (1 - 0.999 ** t)) + 1e-8)
    updates, state = opt.update(jnp.asarray(g), state, x)
    x = optax.apply_updates(x, updates)
  np.testing.assert_allclose(np.asarray(x), ref, rtol=1e-5)
  assert training.learning_rate(training.TrainState(step=0, params=x, opt_state=state)) == pytest.approx(0.01)


def test_learning_rate_cut_reaches_the_optimizer(config):
  opt = training.make_optimizer(config.optim)
  params = {"w": jnp.ones(3)}
  state = training.TrainState(step=jnp.zeros((), jnp.int32), params=params,
                              opt_state=opt.init(params))
  state = training.set_learning_rate(state, 1e-5)
  assert training.learning_rate(state) == pytest.approx(1e-5)
  updates, _ = opt.update({"w": jnp.ones(3)}, state.opt_state, params)
  assert float(jnp.abs(updates["w"]).max()) == pytest.approx(1e-5, rel=1e-3)


_PAGE_FAULTS_OF_A_BIG_BUFFER = """
import resource, sys, threading
from irt_jax import utils
if not utils.retain_freed_memory():  # first, as the entry points call it
  print("unsupported"); sys.exit(0)
import numpy as np
def round_faults(mib):
  before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
  buffer = np.ones(mib * 2**18, np.float32)
  del buffer
  return resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before
def rounds(out, mib):
  round_faults(mib)
  out.append(round_faults(mib))
main, worker = [], []
rounds(main, 64)  # over glibc's largest mmap threshold
thread = threading.Thread(target=rounds, args=(worker, 128))  # over a thread arena's 64 MB heap
thread.start(); thread.join()
print(main[0], worker[0])
"""


def test_freed_step_buffers_are_reused_not_faulted_in_again():
  # What the entry points ask of the allocator: a second big buffer reuses the
  # first one's pages, in the main thread and in a worker thread (XLA allocates
  # from its own). glibc's default unmaps a 64 MiB buffer on free and faults it
  # in again (16,384 pages of 4 KiB, or 32 huge pages); a worker thread's own
  # arena does so for 128 MiB even with mmap switched off.
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  out = subprocess.run([sys.executable, "-c", _PAGE_FAULTS_OF_A_BIG_BUFFER], cwd=repo,
                       capture_output=True, text=True, check=True).stdout.strip()
  if out == "unsupported":
    pytest.skip("no glibc mallopt here")
  main, worker = map(int, out.split())
  assert main < 16 and worker < 16, out
