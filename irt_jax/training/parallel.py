"""Data-parallel layout: one named axis over every device, params replicated.

A global batch of query rows is split evenly over processes, then over each
process's local devices: arrays go from [Q, ...] to [local_devices, Q_dev, ...].
The training state is not stacked that way: it is one replicated array per
leaf (same shape as on the host), which the pmapped step updates in place.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

AXIS = "data"  # the pmapped axis that gradients and metrics are summed over


def local_device_count() -> int:
  return jax.local_device_count()


def queries_per_batch(batch_cells: int, n_models: int, n_devices: int) -> int:
  """Query rows in one global batch: about `batch_cells` (model, query) cells,
  rounded up so every device gets the same number of rows."""
  rows = max(1, math.ceil(batch_cells / max(n_models, 1)))
  return math.ceil(rows / n_devices) * n_devices


def psum(tree: Any, axis_name: str = AXIS) -> Any:
  """`lax.psum` over `axis_name`, skipped where the axis has one device.

  Summing over one device is the identity, but XLA's CPU backend still runs a
  one-replica all-reduce, which copies its operands into fresh buffers: 84 MB
  of gradients at the paper's shape, 19 ms a step before it was skipped
  (experiments/bench/profile_step.py).
  """
  if jax.lax.axis_size(axis_name) == 1:
    return tree
  return jax.lax.psum(tree, axis_name)


def local_sharding() -> NamedSharding:
  """Leading axis split over this process's devices, as pmap lays its batches out."""
  return NamedSharding(Mesh(np.array(jax.local_devices()), (AXIS,)), PartitionSpec(AXIS))


def replicate(tree: Any, devices: list | None = None) -> Any:
  """Host pytree -> one copy on each of `devices` (default: this process's),
  with no leading device axis: the layout the pmapped step takes and returns
  its state in (`in_axes=None`, `out_axes=None`; see training.pmap_train_step)."""
  mesh = Mesh(np.array(devices or jax.local_devices()), (AXIS,))
  sharding = NamedSharding(mesh, PartitionSpec())
  return jax.tree.map(lambda x: jax.device_put(np.asarray(x), sharding), tree)


def unreplicate(tree: Any) -> Any:
  """This process's first device's copy of a replicated pytree, as host numpy.

  Reads the device buffer directly: a gather over the replicated array instead
  would launch a multi-device program, whose collectives can interleave badly
  with the pmapped steps still queued on the devices.
  """
  return jax.device_get(jax.tree.map(lambda x: x.addressable_shards[0].data, tree))


def like(value: Any, reference: jax.Array) -> jax.Array:
  """`value` broadcast to `reference`'s shape, dtype and placement, without a
  device program (the state may be replicated over devices)."""
  full = np.broadcast_to(np.asarray(value, reference.dtype), reference.shape)
  return jax.device_put(full, reference.sharding)


def shard(batch: dict[str, np.ndarray], n_local: int | None = None) -> dict[str, np.ndarray]:
  """[Q, ...] -> [n_local, Q / n_local, ...]."""
  n_local = n_local or local_device_count()

  def split(x):
    if x.shape[0] % n_local:
      raise ValueError(f"batch of {x.shape[0]} rows does not divide over {n_local} devices")
    return x.reshape((n_local, x.shape[0] // n_local) + x.shape[1:])

  return {k: split(v) for k, v in batch.items()}
