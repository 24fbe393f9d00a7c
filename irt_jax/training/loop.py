"""Training: a pure data-parallel step and the epoch loop around it.

Sections: optimiser; state and steps (pure, pmapped over the `data` axis);
epoch-level controllers (plateau LR, early stopping); the loop
(`train_and_evaluate`), which owns logging, checkpoints and resuming.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging

from irt_jax.errors import UserError
from irt_jax.training import batches
from irt_jax import checkpoint as ckpt_lib
from irt_jax.data import io as data_lib
from irt_jax.data import resolve
from irt_jax.training import distributed
from irt_jax.training import fitting
from irt_jax.models import losses
from irt_jax import models
from irt_jax.training import parallel
from irt_jax.training import sizing
from irt_jax import utils
from irt_jax.models import base as kind_lib

# Fields that may change between an interrupted run and its resumption.
RESUMABLE_FIELDS = ("train.num_epochs", "train.log_every_steps", "train.eval_rows",
                    "checkpoint.every_steps", "train.early_stop_patience")


class TrainingError(UserError, RuntimeError):
  """Training cannot go on (non-finite loss, a workdir of another run, ...)."""


# ----------------------------------------------------------------------------
# Optimiser.

def make_optimizer(optim: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """Adam with coupled L2 decay, as torch.optim.Adam(weight_decay=wd).

  The decay is added to the gradient before Adam's moments (unlike AdamW); the
  learning rate is a hyperparameter in the state so the plateau schedule can
  change it between epochs and checkpoints carry it.
  """

  @optax.inject_hyperparams
  def adam_l2(learning_rate, weight_decay):
    return optax.chain(optax.add_decayed_weights(weight_decay),
                       optax.scale_by_adam(b1=optim.b1, b2=optim.b2, eps=optim.eps),
                       optax.scale_by_learning_rate(learning_rate))

  return adam_l2(learning_rate=optim.lr, weight_decay=optim.weight_decay)


# ----------------------------------------------------------------------------
# State and steps.

@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: kind_lib.Params
  opt_state: optax.OptState


def init_state(rng: jax.Array, kind: kind_lib.Kind, spec,
               optimizer: optax.GradientTransformation) -> TrainState:
  params = kind.init(rng, spec)
  return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                    opt_state=optimizer.init(params))


def make_train_step(kind: kind_lib.Kind, spec, optimizer: optax.GradientTransformation,
                    axis_name: str = parallel.AXIS) -> Callable:
  """The per-device program of one data-parallel step, for any gradient kind.

  The objective is the kind's summed loss (BCE unless the kind brings its own)
  averaged over every observed cell of the global batch:
  each device differentiates its own sum divided by the global cell count, and
  the gradients are summed over `axis_name`. Devices holding more observed cells
  thus weigh more, exactly as in one big batch, whatever the device count.
  """

  loss_sum = kind.objective()

  def train_step(state: TrainState, batch: dict, rng: jax.Array):
    step_rng = jax.random.fold_in(rng, state.step)
    mask, labels = batch["mask"], batch["labels"]
    total = parallel.psum(mask.sum().astype(jnp.float32), axis_name)

    def objective(params):
      value, logits = loss_sum(params, batch, spec, step_rng)
      return value / jnp.maximum(total, 1.0), logits

    grads, logits = jax.grad(objective, has_aux=True)(state.params)
    grads = parallel.psum(grads, axis_name)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = parallel.psum(losses.masked_counts(logits, labels, mask), axis_name)
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics

  return train_step


def pmap_train_step(kind: kind_lib.Kind, spec, optimizer: optax.GradientTransformation,
                    devices: list | None = None, donate: bool = True) -> Callable:
  """`make_train_step` as it runs: pmapped, the batch split over devices, the
  state and metrics replicated (`parallel.replicate`) and the state donated.

  The state goes in and out with no device axis (`in_axes=None`,
  `out_axes=None`; the summed gradients keep every copy identical). Stacked on
  a leading axis instead, pmap squeezes and re-expands it around the step, and
  XLA then copies every parameter and Adam moment to keep the donated buffers
  safe: 0.6 GB of extra traffic per step (`experiments/bench/step_variants.py`, variant
  `pmap_stacked`).
  """
  return jax.pmap(make_train_step(kind, spec, optimizer), axis_name=parallel.AXIS,
                  in_axes=(None, 0, None), out_axes=None,
                  donate_argnums=(0,) if donate else (), devices=devices)


def pmap_eval_step(kind: kind_lib.Kind, spec) -> Callable:
  """`make_eval_step` pmapped like `pmap_train_step`: replicated params in,
  a batch split over devices, the (summed) counts out once."""
  return jax.pmap(make_eval_step(kind, spec), axis_name=parallel.AXIS, in_axes=(None, 0),
                  out_axes=None)


def make_eval_step(kind: kind_lib.Kind, spec, axis_name: str = parallel.AXIS) -> Callable:
  """Summed BCE / accuracy counts of a block, without noise or dropout (the
  same yardstick for every kind, whatever it trains on)."""

  def eval_step(params, batch):
    logits = kind.logits(params, batch["embeddings"], spec)
    return parallel.psum(losses.masked_counts(logits, batch["labels"], batch["mask"]),
                         axis_name)

  return eval_step


def evaluate_split(p_eval_step: Callable, params, data: data_lib.ResponseData, split: str,
                   rows: int) -> dict[str, float]:
  """Loss and accuracy over every observed cell of a split (all processes join)."""
  outs = [p_eval_step(params, parallel.shard(block))
          for block in batches.iterate(data.split(split), data.embeddings, rows,
                                       process_index=jax.process_index(),
                                       process_count=jax.process_count())]
  fetched = [parallel.unreplicate(o) for o in outs]  # psum'd: the global total
  return losses.summarise({k: sum(float(f[k]) for f in fetched) for k in fetched[0]})


# ----------------------------------------------------------------------------
# Epoch-level controllers (host side, saved in checkpoint meta).

@dataclasses.dataclass
class Plateau:
  """ReduceLROnPlateau on val loss, torch semantics (mode=min, rel threshold):
  the rate is cut when more than `patience` epochs in a row fail to improve."""
  factor: float
  patience: int
  threshold: float
  best: float = math.inf
  bad_epochs: int = 0

  def update(self, val_loss: float) -> bool:
    """Records an epoch; True when the learning rate should be cut now."""
    if val_loss < self.best * (1.0 - self.threshold):
      self.best, self.bad_epochs = val_loss, 0
      return False
    self.bad_epochs += 1
    if self.bad_epochs > self.patience:
      self.bad_epochs = 0
      return True
    return False


@dataclasses.dataclass
class EarlyStopping:
  """Stops after `patience` epochs without a val-accuracy gain; remembers the best."""
  patience: int
  best: float = -math.inf
  best_step: int | None = None
  best_epoch: int | None = None
  bad_epochs: int = 0

  def update(self, val_accuracy: float, step: int, epoch: int) -> bool:
    """Records an epoch; True when training should stop."""
    if val_accuracy > self.best:
      self.best, self.best_step, self.best_epoch, self.bad_epochs = val_accuracy, step, epoch, 0
    else:
      self.bad_epochs += 1
    return self.bad_epochs >= self.patience


def set_learning_rate(state: TrainState, lr: float) -> TrainState:
  opt_state = state.opt_state
  hyper = dict(opt_state.hyperparams)
  hyper["learning_rate"] = parallel.like(lr, hyper["learning_rate"])
  return state.replace(opt_state=opt_state._replace(hyperparams=hyper))


def learning_rate(state: TrainState) -> float:
  return float(np.asarray(state.opt_state.hyperparams["learning_rate"]).reshape(-1)[0])


# ----------------------------------------------------------------------------
# The loop.

def _flat(d: dict, prefix: str = "") -> dict:
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(_flat(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out


def _check_same_run(saved: dict, current: dict, directory: str) -> None:
  a, b = _flat(saved), _flat(json.loads(json.dumps(current)))
  diff = sorted(k for k in set(a) | set(b)
                if a.get(k) != b.get(k) and k not in RESUMABLE_FIELDS)
  if diff:
    details = ", ".join(f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in diff[:6])
    raise TrainingError(f"{directory} holds checkpoints of a run with another config "
                        f"({details}); use a fresh --workdir or the same config")


def run_layout(data: data_lib.ResponseData, rows: int, steps_per_epoch: int) -> dict:
  """What a resumed run must share with the run that wrote its checkpoints: the
  device and process counts (the batch blocks and the steps per epoch depend on
  them) and a fingerprint of the training data."""
  return {"device_count": jax.device_count(), "process_count": jax.process_count(),
          "rows_per_batch": rows, "steps_per_epoch": steps_per_epoch,
          "data": data_lib.fingerprint(data)}


def _check_same_layout(saved: dict | None, current: dict, directory: str) -> None:
  """Refuses to continue a run whose batches or data would differ from its start."""
  if saved is None:  # checkpoints written before layouts were recorded
    logging.warning("%s: checkpoints do not record their device count or data "
                    "fingerprint; resuming without checking them", directory)
    return
  devices = lambda l: f"{l['device_count']} device(s) in {l['process_count']} process(es)"
  if (saved["device_count"], saved["process_count"]) != (current["device_count"],
                                                         current["process_count"]):
    raise TrainingError(
        f"{directory} holds a run trained on {devices(saved)} ({saved['steps_per_epoch']} steps "
        f"per epoch), but this job has {devices(current)}, which would change its batches; "
        f"resume with {devices(saved)} or use a fresh --workdir")
  changed = sorted(k for k in set(saved["data"]) | set(current["data"])
                   if saved["data"].get(k) != current["data"].get(k))
  if changed:
    raise TrainingError(
        f"{directory} holds a run trained on other data (changed since: {', '.join(changed)}); "
        f"restore the data it was trained on, or use a fresh --workdir for the new data")


class MetricsLog:
  """metrics.jsonl in the workdir, one line per epoch (process 0 only)."""

  def __init__(self, workdir: str, resume_epoch: int):
    self.path = os.path.join(workdir, "metrics.jsonl")
    self.enabled = jax.process_index() == 0
    if self.enabled and os.path.exists(self.path):  # drop epochs that will be re-run
      with open(self.path) as f:
        kept = [l for l in f if l.strip() and json.loads(l)["epoch"] < resume_epoch]
      with open(self.path, "w") as f:
        f.writelines(kept)

  def write(self, record: dict) -> None:
    if self.enabled:
      with open(self.path, "a") as f:
        f.write(json.dumps(record) + "\n")


def _check_finite(record: dict, what: str) -> None:
  if not math.isfinite(record["loss"]):
    raise TrainingError(f"non-finite {what} loss ({record['loss']}); stopping before any "
                        f"checkpoint is written with it. Lower --config.optim.lr or check "
                        f"the data for extreme embeddings")


def _stop_preempted(step: int) -> None:
  raise distributed.Preempted(f"stopped at step {step} on a preemption notice (SIGTERM); "
                              f"its checkpoint is written: rerun the same command to resume")


def check_config(config: ml_collections.ConfigDict) -> kind_lib.Kind:
  """The config's kind, with its model fields and (gradient kinds) batch layout
  checked: an unknown kind, field or layout fails before a workdir is made or
  data is read, so entry points call this first."""
  kind = models.for_config(config)
  kind.spec(config.model, 1, 1)
  if kind.trained_by_gradient:
    batches.layout(config.train.batching, config.train.batch_cells, 1, 1)
    sizing.resolve(config, 1, 1)  # config.auto checked too
  return kind


def run_index(config: ml_collections.ConfigDict, workdir: str,
              data: data_lib.ResponseData) -> dict:
  """What a checkpoint records to interpret its parameters: the data's index
  maps and the encoder that made its query embeddings (for routing new text)."""
  return {**data.index_maps(), "encoder": resolve.encoder_record(config, workdir)}


def _data_for(config, workdir: str, data: data_lib.ResponseData | None):
  """`data` as given; None: resolved from `config.data` into `workdir` (synthetic
  data generated, text encoded, a parsed copy cached there) for library callers
  that have not loaded it. Entry points resolve it themselves and hand it over."""
  os.makedirs(workdir, exist_ok=True)
  if data is None:
    data = resolve.prepare_and_load(config, workdir)
  logging.info("%s", data_lib.describe(data))
  return data


def run(config: ml_collections.ConfigDict, workdir: str,
        data: data_lib.ResponseData | None = None) -> dict[str, Any]:
  """Trains or fits the run in `workdir`, by its kind: the one place that picks.

  Gradient kinds go through `train_and_evaluate`; kinds fitted directly from the
  data (knn, logreg) through `fitting.fit_and_save`. Both end in the same
  self-describing checkpoint. `data` as in `train_and_evaluate`.
  """
  kind = check_config(config)
  if kind.trained_by_gradient:
    return train_and_evaluate(config, workdir, data)
  data = _data_for(config, workdir, data)
  return fitting.fit_and_save(config, workdir, kind, data, run_index(config, workdir, data))


@dataclasses.dataclass
class _Run:
  """What the epochs of one training run share: its fixed setup, its replicated
  state and step, and the host-side controllers saved with every checkpoint."""
  config: ml_collections.ConfigDict
  data: data_lib.ResponseData
  batch_layout: batches.Layout
  steps_per_epoch: int
  eval_rows: int
  p_train_step: Callable
  p_eval_step: Callable
  step_rng: jax.Array
  checkpoints: ckpt_lib.Checkpoints
  index: dict
  layout: dict
  plateau: Plateau
  early: EarlyStopping
  meta: dict
  state: Any
  step: int
  resumed_from: int | None

  def save(self, epoch_sums: dict | None) -> None:
    """A checkpoint of the current step (`epoch_sums`: the counts so far of an
    epoch stopped part-way, None at an epoch's end)."""
    early = self.early
    self.meta = ckpt_lib.run_meta(
        step=self.step, seed=self.config.seed, history=self.meta["history"],
        stopped=self.meta["stopped"], epoch_sums=epoch_sums, layout=self.layout,
        plateau=dataclasses.asdict(self.plateau), early_stopping=dataclasses.asdict(early),
        best={"step": early.best_step, "epoch": early.best_epoch,
              "val_accuracy": early.best if early.best_step is not None else None})
    self.checkpoints.save(self.step, parallel.unreplicate(self.state), meta=self.meta,
                          config=self.config.to_dict(), index=self.index)


def _batch_layout(config, data: data_lib.ResponseData) -> tuple[batches.Layout, int, int]:
  """(the batch layout over every device, its steps per epoch, eval rows per block)."""
  n_global = jax.device_count()
  batch_layout = batches.layout(config.train.batching, config.train.batch_cells,
                                data.n_models, n_global)
  eval_rows = math.ceil(config.train.eval_rows / n_global) * n_global
  steps_per_epoch = batch_layout.n_batches(data.split("train"))
  logging.info("%d devices (%d processes); %s of %d rows x %d models per batch; "
               "%d steps per epoch", n_global, jax.process_count(), batch_layout.name,
               batch_layout.rows, data.n_models, steps_per_epoch)
  return batch_layout, steps_per_epoch, eval_rows


def _resume(checkpoints: ckpt_lib.Checkpoints, latest: int, config, layout: dict, host_state):
  """(state, meta) of the checkpoint at `latest`, refused when it cannot be continued."""
  _, meta, saved_config, _ = checkpoints.restore_json(latest)
  if meta.get("added_models") or meta.get("ability_updates"):
    raise TrainingError(f"{checkpoints.directory} holds a run with LLMs added after "
                        f"training (add_model) or abilities updated from feedback (update); "
                        f"train in a fresh --workdir instead")
  _check_same_run(saved_config, config.to_dict(), checkpoints.directory)
  _check_same_layout(meta.get("layout"), layout, checkpoints.directory)
  return checkpoints.restore_state(latest, host_state), meta


def restore_or_init(config, workdir: str, kind: kind_lib.Kind,
                    data: data_lib.ResponseData) -> _Run:
  """A fresh run's state, or the latest checkpoint's when `workdir` holds one
  (refused if it was written with another config, device layout or data)."""
  batch_layout, steps_per_epoch, eval_rows = _batch_layout(config, data)
  utils.retain_freed_memory()  # temporaries reused, not faulted in again (entry points call it first)
  spec = kind.spec(config.model, data.n_models, data.embed_dim)
  optimizer = make_optimizer(config.optim)
  init_rng, step_rng = jax.random.split(jax.random.PRNGKey(config.seed))
  host_state = jax.device_get(init_state(init_rng, kind, spec, optimizer))
  logging.info("model %s: %d parameters", kind.name, kind_lib.count_params(host_state.params))
  checkpoints = ckpt_lib.Checkpoints(workdir)
  plateau = Plateau(config.optim.plateau_factor, config.optim.plateau_patience,
                    config.optim.plateau_threshold)
  early = EarlyStopping(config.train.early_stop_patience)
  meta = {"history": [], "epoch_sums": None, "stopped": False}
  layout = run_layout(data, batch_layout.rows, steps_per_epoch)
  latest = checkpoints.latest_step()
  if latest is not None:
    try:
      host_state, meta = _resume(checkpoints, latest, config, layout, host_state)
    except BaseException:  # closed, so its background cleanup ends before the process does
      checkpoints.close()
      raise
    plateau = Plateau(**meta["plateau"])
    early = EarlyStopping(**{**meta["early_stopping"], "patience": early.patience})
    logging.info("Resumed from step %d of %s", latest, checkpoints.directory)
  return _Run(config=config, data=data, batch_layout=batch_layout,
              steps_per_epoch=steps_per_epoch, eval_rows=eval_rows,
              p_train_step=pmap_train_step(kind, spec, optimizer),
              p_eval_step=pmap_eval_step(kind, spec), step_rng=step_rng,
              checkpoints=checkpoints, index=run_index(config, workdir, data), layout=layout,
              plateau=plateau, early=early, meta=meta, state=parallel.replicate(host_state),
              step=int(host_state.step), resumed_from=latest)


def train_epoch(job: _Run, epoch: int, start_block: int) -> tuple[dict, bool]:
  """The steps of one epoch from batch `start_block` on; (the epoch's summed
  counts, whether a preemption notice stopped it). Checkpoints part-way through
  every `checkpoint.every_steps` steps, and on a preemption notice."""
  config, n_steps = job.config, job.steps_per_epoch
  log_every, every_ckpt = max(1, config.train.log_every_steps), config.checkpoint.every_steps
  t0 = time.time()
  sums = job.meta.get("epoch_sums") if start_block else None
  pending, preempted = [], False
  for i, block in enumerate(job.batch_layout.iterate(
      job.data.split("train"), job.data.embeddings, seed=config.seed, epoch=epoch,
      start=start_block, process_index=jax.process_index(),
      process_count=jax.process_count()), start=start_block):
    job.state, m = job.p_train_step(job.state, parallel.shard(block), job.step_rng)
    job.step += 1
    pending.append(m)
    preempted = distributed.preemption_requested(job.step)  # SIGTERM in a multi-process job
    checkpoint_due = bool(every_ckpt and job.step % every_ckpt == 0)
    if len(pending) >= log_every or i + 1 == n_steps or preempted or checkpoint_due:
      fetched = [parallel.unreplicate(p) for p in pending]
      pending = []
      # fsum in float64: the epoch's sums must not depend on where they were
      # flushed (a preemption flushes at another step than an uninterrupted run).
      part = {k: math.fsum(float(f[k]) for f in fetched) for k in fetched[0]}
      sums = part if sums is None else {k: sums[k] + part[k] for k in sums}
      _check_finite(losses.summarise(part), "training")
      running = losses.summarise(sums)
      # Step lines only with --verbosity=1: by default one line per epoch (irt_jax.logs).
      logging.vlog(1, "epoch %d step %d/%d: train loss %.4f acc %.4f (%.1f steps/s)",
                   epoch + 1, i + 1, n_steps, running["loss"], running["accuracy"],
                   (i + 1 - start_block) / max(time.time() - t0, 1e-9))
      if (preempted or checkpoint_due) and i + 1 < n_steps:
        job.save(sums)
    if preempted:
      break
  if preempted and i + 1 < n_steps:
    _stop_preempted(job.step)
  return sums, preempted


def end_epoch(job: _Run, epoch: int, sums: dict, seconds: float) -> dict:
  """Validates after an epoch, steps the plateau schedule and early stopping,
  and records the epoch (checkpoint meta and metrics.jsonl)."""
  train = losses.summarise(sums)
  val = evaluate_split(job.p_eval_step, job.state.params, job.data, "val", job.eval_rows)
  _check_finite(val, "validation")
  lr = learning_rate(job.state)
  if job.plateau.update(val["loss"]):
    job.state = set_learning_rate(job.state, lr * job.plateau.factor)
    logging.info("val loss has not improved for %d epochs: lr %.3g -> %.3g",
                 job.plateau.patience + 1, lr, lr * job.plateau.factor)
  job.meta["stopped"] = job.early.update(val["accuracy"], job.step, epoch)
  record = {"epoch": epoch, "step": job.step, "lr": lr, "train_loss": train["loss"],
            "train_accuracy": train["accuracy"], "val_loss": val["loss"],
            "val_accuracy": val["accuracy"], "seconds": round(seconds, 3),
            "steps_per_second": round(job.steps_per_epoch / max(seconds, 1e-9), 3)}
  job.meta["history"].append(record)
  logging.info("epoch %d/%d: train loss %.4f acc %.4f | val loss %.4f acc %.4f | lr %.3g | "
               "%.1fs", epoch + 1, job.config.train.num_epochs, train["loss"],
               train["accuracy"], val["loss"], val["accuracy"], lr, seconds)
  return record


def train_epochs(job: _Run, workdir: str) -> None:
  """The epochs left to `job` (all of them for a fresh run), each logged and saved."""
  config = job.config
  epoch, start_block = divmod(job.step, job.steps_per_epoch)
  metrics_log = MetricsLog(workdir, epoch)
  while epoch < config.train.num_epochs and not job.meta.get("stopped"):
    t0 = time.time()
    sums, preempted = train_epoch(job, epoch, start_block)
    start_block = 0
    metrics_log.write(end_epoch(job, epoch, sums, time.time() - t0))
    epoch += 1
    job.save(None)
    if preempted:
      _stop_preempted(job.step)
    if job.meta["stopped"]:
      logging.info("early stop: no val-accuracy gain for %d epochs", job.early.patience)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       data: data_lib.ResponseData | None = None) -> dict[str, Any]:
  """Trains (or resumes) the gradient-trained run in `workdir`; returns a summary
  with host state (`resumed_from_step`: the checkpoint it continued from, None
  for a fresh run).

  `data`: what to train on, used as given (nothing is generated, encoded or
  cached; its fingerprint is what a resumed run must match); None resolves
  `config.data` into `workdir`. Kinds fitted without gradients go through `run`.
  Everything a later `eval.py --workdir` needs ends up in `workdir/checkpoints`.
  """
  kind = check_config(config)
  if not kind.trained_by_gradient:
    raise kind_lib.ConfigError(f"model kind {kind.name!r} is fitted, not trained by gradient: "
                               f"use training.run, which picks by the kind")
  data = _data_for(config, workdir, data)
  # config.auto: batch size (and lr) from the data's shape, before the config is saved
  config = sizing.resolve(config, data.n_models, len(data.split("train").queries))
  job = restore_or_init(config, workdir, kind, data)
  try:  # however training ends (an error, a preemption), saves in flight finish first
    train_epochs(job, workdir)
  finally:
    job.checkpoints.wait()
    job.checkpoints.close()
  early = job.early
  logging.info("best val accuracy %.4f at epoch %s (step %s)", early.best,
               None if early.best_epoch is None else early.best_epoch + 1, early.best_step)
  return {"state": parallel.unreplicate(job.state), "history": job.meta["history"],
          "best": job.meta.get("best"), "resumed_from_step": job.resumed_from,
          "steps_per_epoch": job.steps_per_epoch, "rows_per_batch": job.batch_layout.rows,
          "data": data}
