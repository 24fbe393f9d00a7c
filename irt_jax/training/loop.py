"""The epoch loop of a gradient-trained run: batches through the pure step,
validation and the epoch controllers after each epoch, checkpoints (at epoch
ends, every `checkpoint.every_steps`, on a preemption notice) and metrics.jsonl.

A run is held as a few parts: its `RunSpec` and data, the `Plan` of its
batches, its compiled `Steps`, its `Progress` (state, step, controllers), and
the checkpoints it writes.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from typing import Any, Callable

import jax
from absl import logging

from irt_jax import checkpoint as ckpt_lib
from irt_jax import utils
from irt_jax.data import io as data_lib
from irt_jax.models import base as kind_lib
from irt_jax.models import losses
from irt_jax.training import batches
from irt_jax.training import distributed
from irt_jax.training import parallel
from irt_jax.training import resume
from irt_jax.training import schedule as schedule_lib
from irt_jax.training import step as step_lib
from irt_jax.training.resume import TrainingError
from irt_jax.training.specs import RunSpec


@dataclasses.dataclass(frozen=True)
class Plan:
  """How a run's epochs are cut, fixed for the run: the batch layout over every
  device, its steps per epoch, the eval block's rows, and the record a resumed
  run must match (`resume.run_layout`)."""
  layout: batches.Layout
  steps_per_epoch: int
  eval_rows: int
  record: dict


def plan(spec: RunSpec, data: data_lib.ResponseData) -> Plan:
  n_global = jax.device_count()
  layout = batches.layout(spec.batch.batching, spec.batch.batch_cells, data.n_models, n_global)
  eval_rows = math.ceil(spec.batch.eval_rows / n_global) * n_global
  steps_per_epoch = layout.n_batches(data.split("train"))
  logging.info("%d devices (%d processes); %s of %d rows x %d models per batch; "
               "%d steps per epoch", n_global, jax.process_count(), layout.name,
               layout.rows, data.n_models, steps_per_epoch)
  return Plan(layout, steps_per_epoch, eval_rows,
              resume.run_layout(data, layout.rows, steps_per_epoch))


@dataclasses.dataclass(frozen=True)
class Steps:
  """The compiled steps of a run (pmapped) and the key its training noise folds from."""
  train: Callable
  eval: Callable
  rng: jax.Array


@dataclasses.dataclass
class Run:
  """One training run's parts (see the module docstring)."""
  spec: RunSpec
  data: data_lib.ResponseData
  plan: Plan
  steps: Steps
  progress: resume.Progress
  checkpoints: ckpt_lib.Checkpoints
  index: dict           # what the checkpoint records to interpret its params

  def save(self, epoch_sums: dict | None) -> None:
    """A checkpoint of the current step (`epoch_sums`: the counts so far of an
    epoch stopped part-way, None at an epoch's end)."""
    p = self.progress
    early = p.early
    p.meta = ckpt_lib.run_meta(
        step=p.step, seed=self.spec.seed, history=p.meta["history"],
        stopped=p.meta["stopped"], epoch_sums=epoch_sums, layout=self.plan.record,
        plateau=dataclasses.asdict(p.plateau), early_stopping=dataclasses.asdict(early),
        best={"step": early.best_step, "epoch": early.best_epoch,
              "val_accuracy": early.best if early.best_step is not None else None})
    self.checkpoints.save(p.step, parallel.unreplicate(p.state), meta=p.meta,
                          config=self.spec.record, index=self.index)


def start(spec: RunSpec, workdir: str, data: data_lib.ResponseData, index: dict) -> Run:
  """A fresh run, or the latest checkpoint's in `workdir` (refused if it was
  written with another config, device layout or data)."""
  run_plan = plan(spec, data)
  utils.retain_freed_memory()  # temporaries reused, not faulted in again (entry points call it first)
  kind = spec.kind
  model_spec = spec.model.spec(data.n_models, data.embed_dim)
  optimizer = step_lib.make_optimizer(spec.optim)
  init_rng, step_rng = jax.random.split(jax.random.PRNGKey(spec.seed))
  host_state = jax.device_get(step_lib.init_state(init_rng, kind, model_spec, optimizer))
  logging.info("model %s: %d parameters", kind.name, kind_lib.count_params(host_state.params))
  checkpoints = ckpt_lib.Checkpoints(workdir)
  progress = resume.restore_or_init(checkpoints, host_state, spec.schedule, spec.record,
                                    run_plan.record)
  progress.state = parallel.replicate(progress.state)
  steps = Steps(train=step_lib.pmap_train_step(kind, model_spec, optimizer),
                eval=step_lib.pmap_eval_step(kind, model_spec), rng=step_rng)
  return Run(spec=spec, data=data, plan=run_plan, steps=steps, progress=progress,
             checkpoints=checkpoints, index=index)


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


def train_epoch(job: Run, epoch: int, start_block: int) -> tuple[dict, bool]:
  """The steps of one epoch from batch `start_block` on; (the epoch's summed
  counts, whether a preemption notice stopped it). Checkpoints part-way through
  every `checkpoint.every_steps` steps, and on a preemption notice."""
  p, n_steps = job.progress, job.plan.steps_per_epoch
  log_every, every_ckpt = max(1, job.spec.batch.log_every_steps), job.spec.checkpoint_every
  t0 = time.time()
  sums = p.meta.get("epoch_sums") if start_block else None
  pending, preempted = [], False
  for i, block in enumerate(job.plan.layout.iterate(
      job.data.split("train"), job.data.embeddings, seed=job.spec.seed, epoch=epoch,
      start=start_block, process_index=jax.process_index(),
      process_count=jax.process_count()), start=start_block):
    p.state, m = job.steps.train(p.state, parallel.shard(block), job.steps.rng)
    p.step += 1
    pending.append(m)
    preempted = distributed.preemption_requested(p.step)  # SIGTERM in a multi-process job
    checkpoint_due = bool(every_ckpt and p.step % every_ckpt == 0)
    if len(pending) >= log_every or i + 1 == n_steps or preempted or checkpoint_due:
      fetched = [parallel.unreplicate(f) for f in pending]
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
    _stop_preempted(p.step)
  return sums, preempted


def end_epoch(job: Run, epoch: int, sums: dict, seconds: float) -> dict:
  """Validates after an epoch, steps the plateau schedule and early stopping,
  and records the epoch (checkpoint meta and metrics.jsonl)."""
  p = job.progress
  train = losses.summarise(sums)
  val = step_lib.evaluate_split(job.steps.eval, p.state.params, job.data, "val",
                                job.plan.eval_rows)
  _check_finite(val, "validation")
  lr = schedule_lib.learning_rate(p.state)
  if p.plateau.update(val["loss"]):
    p.state = schedule_lib.set_learning_rate(p.state, lr * p.plateau.factor)
    logging.info("val loss has not improved for %d epochs: lr %.3g -> %.3g",
                 p.plateau.patience + 1, lr, lr * p.plateau.factor)
  p.meta["stopped"] = p.early.update(val["accuracy"], p.step, epoch)
  record = {"epoch": epoch, "step": p.step, "lr": lr, "train_loss": train["loss"],
            "train_accuracy": train["accuracy"], "val_loss": val["loss"],
            "val_accuracy": val["accuracy"], "seconds": round(seconds, 3),
            "steps_per_second": round(job.plan.steps_per_epoch / max(seconds, 1e-9), 3)}
  p.meta["history"].append(record)
  logging.info("epoch %d/%d: train loss %.4f acc %.4f | val loss %.4f acc %.4f | lr %.3g | "
               "%.1fs", epoch + 1, job.spec.schedule.num_epochs, train["loss"],
               train["accuracy"], val["loss"], val["accuracy"], lr, seconds)
  return record


def train_epochs(job: Run, workdir: str) -> None:
  """The epochs left to `job` (all of them for a fresh run), each logged and saved."""
  p = job.progress
  epoch, start_block = divmod(p.step, job.plan.steps_per_epoch)
  metrics_log = MetricsLog(workdir, epoch)
  while epoch < job.spec.schedule.num_epochs and not p.meta.get("stopped"):
    t0 = time.time()
    sums, preempted = train_epoch(job, epoch, start_block)
    start_block = 0
    metrics_log.write(end_epoch(job, epoch, sums, time.time() - t0))
    epoch += 1
    job.save(None)
    if preempted:
      _stop_preempted(p.step)
    if p.meta["stopped"]:
      logging.info("early stop: no val-accuracy gain for %d epochs", p.early.patience)


def train(spec: RunSpec, workdir: str, data: data_lib.ResponseData,
          index: dict) -> dict[str, Any]:
  """Trains (or resumes) the gradient-trained run `spec` in `workdir` on `data`
  (sized already: `RunSpec.sized`); returns a summary with host state."""
  job = start(spec, workdir, data, index)
  try:  # however training ends (an error, a preemption), saves in flight finish first
    train_epochs(job, workdir)
  finally:
    job.checkpoints.wait()
    job.checkpoints.close()
  p = job.progress
  early = p.early
  logging.info("best val accuracy %.4f at epoch %s (step %s)", early.best,
               None if early.best_epoch is None else early.best_epoch + 1, early.best_step)
  return {"state": parallel.unreplicate(p.state), "history": p.meta["history"],
          "best": p.meta.get("best"), "resumed_from_step": p.resumed_from,
          "steps_per_epoch": job.plan.steps_per_epoch, "rows_per_batch": job.plan.layout.rows,
          "data": data}
