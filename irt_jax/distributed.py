"""Joining a multi-process JAX job (TPU pods, multi-GPU hosts, CPU tests)."""

from __future__ import annotations

import jax
from absl import flags
from absl import logging


def define_flags() -> None:
  flags.DEFINE_bool("distributed", False,
                    "Join a multi-process job with JAX's auto-detection (TPU pods, Slurm).")
  flags.DEFINE_string("coordinator_address", None, "HOST:PORT of process 0.")
  flags.DEFINE_integer("num_processes", None, "Processes in the job.")
  flags.DEFINE_integer("process_id", None, "This process's index.")


def initialize_from_flags() -> None:
  f = flags.FLAGS
  explicit = [f.coordinator_address, f.num_processes, f.process_id]
  if any(x is not None for x in explicit):
    if any(x is None for x in explicit):
      raise flags.ValidationError("--coordinator_address, --num_processes and --process_id "
                                  "go together")
    jax.distributed.initialize(coordinator_address=f.coordinator_address,
                               num_processes=f.num_processes, process_id=f.process_id)
  elif f.distributed:
    jax.distributed.initialize()
  else:
    return
  logging.info("process %d of %d, %d local / %d global devices", jax.process_index(),
               jax.process_count(), jax.local_device_count(), jax.device_count())
