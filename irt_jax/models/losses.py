"""Masked binary cross-entropy and counts over the observed cells of a block.

Everything is returned as sums plus a cell count, so that averages over a
batch split across devices (or hosts) are exact: sum the parts, then divide.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def masked_bce_sum(logits: jax.Array, labels: jax.Array, mask: jax.Array) -> jax.Array:
  """Sum over observed cells of the binary cross-entropy with logits.

  Unobserved cells contribute exactly zero, to the value and to the gradient
  (jnp.where, not multiplication, so a NaN label there cannot leak in).
  """
  per_cell = optax.sigmoid_binary_cross_entropy(logits, jnp.where(mask, labels, 0.0))
  return jnp.where(mask, per_cell, 0.0).sum()


def masked_counts(logits: jax.Array, labels: jax.Array, mask: jax.Array) -> dict[str, jax.Array]:
  """Loss sum, correct predictions (threshold 0.5) and observed-cell count."""
  correct = ((logits > 0) == (labels > 0.5)) & mask
  return {"loss_sum": masked_bce_sum(logits, labels, mask),
          "correct": correct.sum().astype(jnp.float32),
          "count": mask.sum().astype(jnp.float32)}


def summarise(sums: dict) -> dict[str, float]:
  """Host-side: loss and accuracy from summed counts."""
  count = max(float(sums["count"]), 1.0)
  return {"loss": float(sums["loss_sum"]) / count,
          "accuracy": float(sums["correct"]) / count,
          "cells": int(sums["count"])}
