"""Joining a multi-process JAX job (TPU pods, multi-GPU hosts, CPU tests).

Every process runs the same `train.py`; JAX's multi-controller runtime makes the
devices of all processes one global set, and the pmapped step's collectives
(`psum` over the `data` axis) span them. Three ways in:

  --coordinator_address=HOST:PORT --num_processes=N --process_id=I   explicit
  --distributed                                                       auto-detected
                                                                      (TPU pods, Slurm, Open MPI)
  neither                                                             one process

A dead peer must not leave the others blocked in a collective for ever. The
coordination service notices a process that stops sending heartbeats within
`--heartbeat_timeout` seconds and makes every other process exit with an
error; a process stuck in a collective whose peer vanished is caught by the
same mechanism. A SIGTERM (preemption, `scancel`, `kill`) is not fatal at
once: JAX's preemption service catches it in any process, all processes agree
on a step to stop at, the training loop checkpoints there and exits with an
error (`preemption_requested`), and rerunning the same command resumes.
`--cpu_collectives` picks the library behind cross-process
collectives on the CPU backend (JAX has none by default).
"""

from __future__ import annotations

import jax
from absl import logging


def configure_cpu_collectives(implementation: str = "gloo") -> None:
  """Lets CPU devices of different processes run collectives; must precede
  `jax.distributed.initialize` and the first use of the CPU backend. Harmless
  on GPU and TPU hosts, whose accelerator collectives are their own."""
  if implementation != "none":
    jax.config.update("jax_cpu_collectives_implementation", implementation)


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, *, cpu_collectives: str = "gloo",
               heartbeat_timeout: int = 60, initialization_timeout: int = 300,
               shutdown_timeout: int = 60) -> None:
  """`jax.distributed.initialize` with CPU collectives and bounded failure times.
  Arguments left None are auto-detected by JAX (TPU pods, Slurm, Open MPI)."""
  configure_cpu_collectives(cpu_collectives)
  jax.distributed.initialize(coordinator_address=coordinator_address,
                             num_processes=num_processes, process_id=process_id,
                             initialization_timeout=initialization_timeout,
                             heartbeat_timeout_seconds=heartbeat_timeout,
                             shutdown_timeout_seconds=shutdown_timeout)


def join(*, auto_detect: bool = False, coordinator_address: str | None = None,
         num_processes: int | None = None, process_id: int | None = None,
         log_all_processes: bool = False, **options) -> bool:
  """Joins the job described by an explicit address/count/id triple, or by JAX's
  auto-detection with `auto_detect`; False (and nothing done) when neither.
  `options`: cpu_collectives and the timeouts of `initialize`."""
  explicit = [coordinator_address, num_processes, process_id]
  if any(x is not None for x in explicit):
    if any(x is None for x in explicit):
      raise ValueError("--coordinator_address, --num_processes and --process_id go together")
    initialize(coordinator_address, num_processes, process_id, **options)
  elif auto_detect:
    initialize(**options)
  else:
    return False
  logging.info("process %d of %d, %d local / %d global devices", jax.process_index(),
               jax.process_count(), jax.local_device_count(), jax.device_count())
  if jax.process_index() != 0 and not log_all_processes:
    logging.set_verbosity(logging.WARNING)
  return True


class Preempted(RuntimeError):
  """A process of the job was asked to stop (SIGTERM); a checkpoint was written."""


def preemption_requested(step: int) -> bool:
  """True at the step that every process agreed to stop at after one of them
  got SIGTERM; always False in a single-process run. Every process must call it
  after every training step, with the same step numbers."""
  global _preemption_service
  if jax.process_count() == 1 or not _preemption_service:
    return False
  from jax.experimental import multihost_utils
  try:
    return multihost_utils.reached_preemption_sync_point(step)
  except RuntimeError:  # JAX's preemption service is switched off
    _preemption_service = False
    return False


_preemption_service = True
