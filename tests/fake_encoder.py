"""A deterministic stand-in for the query encoder, for Router and service tests."""

import hashlib

import numpy as np


class HashEncoder:
  """A deterministic stand-in for a SentenceEncoder: each text -> a fixed random vector."""

  def __init__(self, dim: int):
    self.dim = dim
    self.name = "hash"
    self.calls = 0

  def encode(self, texts, batch_size=64, progress=False):
    self.calls += 1
    rows = []
    for t in texts:
      seed = int.from_bytes(hashlib.sha256(t.encode()).digest()[:8], "little")
      rows.append(np.random.default_rng(seed).normal(size=self.dim))
    return np.asarray(rows, np.float32).reshape(len(texts), self.dim)
