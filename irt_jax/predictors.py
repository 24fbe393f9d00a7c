"""Any trained run as one predictor: query embeddings -> logits [queries, models].

Evaluation, routing, the Router and the service read runs only through
`load(workdir)`: the checkpoint says which kind it holds (config.model.name),
with which models and which query encoder, so no training flag is repeated and
nothing here branches on kind.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import ml_collections
import numpy as np

from irt_jax import numerics
from irt_jax import checkpoint as ckpt_lib
from irt_jax import models
from irt_jax.models import base

# Rows go in chunks of CHUNK, the remainder padded up to the next power of two,
# so any stream of batch sizes compiles at most log2(CHUNK) + 1 programs and one
# query runs a one-row program, not a padded chunk. On the 2-core CPU 256-row
# chunks gave about 1.35x the queries/s of 2048-row ones at the paper's shape
# (their [rows, experts, hidden] activations stay in cache; experiments/bench/run.py).
CHUNK = 256


def bucket(rows: int, chunk: int = CHUNK) -> int:
  """The padded row count a part of `rows` rows runs at."""
  return min(chunk, 1 << max(rows - 1, 0).bit_length())


@dataclasses.dataclass(frozen=True)
class Predictor:
  """A kind, its spec and its params: P(correct) for queries x models."""
  kind: base.Kind
  spec: Any
  params: base.Params           # host numpy (or device arrays)
  model_names: tuple[str, ...]

  @property
  def input_dim(self) -> int:
    return self.spec.input_dim

  def logits(self, embeddings: np.ndarray, chunk: int = CHUNK) -> np.ndarray:
    """Logits of P(correct) [N, M] (float32) for query embeddings [N, D].

    Route and rank on these: float32 probabilities saturate to 1.0 (and tie)
    above a logit of about 17.
    """
    embeddings = np.asarray(embeddings)
    if embeddings.ndim != 2 or embeddings.shape[1] != self.input_dim:
      raise ValueError(f"query embeddings of shape {embeddings.shape} do not fit this run, "
                       f"which reads {self.input_dim}-d embeddings")
    fn = _jitted_logits(self.kind, self.spec)
    n, out = embeddings.shape[0], []
    params = self._prepared
    for start in range(0, n, chunk):
      part = np.asarray(embeddings[start:start + chunk], np.float32)
      rows = part.shape[0]
      size = bucket(rows, chunk)
      if size > rows:
        part = np.concatenate([part, np.zeros((size - rows, part.shape[1]), np.float32)])
      out.append(np.asarray(fn(params, part))[:rows])
    if not out:
      return np.zeros((0, len(self.model_names)), np.float32)
    return np.concatenate(out)

  @functools.cached_property
  def _prepared(self):
    """The params on the device, in the kind's prediction form (`Kind.prepare`),
    made once per predictor: a call then moves only its queries, not the weights."""
    params = jax.device_put(self.params)
    if self.kind.prepare is not None:
      params = jax.jit(self.kind.prepare, static_argnums=1)(params, self.spec)
    return jax.block_until_ready(params)

  @property
  def prediction_params(self):
    """The params `logits` reads: on the device, in the kind's prediction form."""
    return self._prepared

  def proba(self, embeddings: np.ndarray) -> np.ndarray:
    """P(correct) [N, M]; for ranking use `logits`."""
    return numerics.sigmoid(self.logits(embeddings))

  def with_params(self, params: base.Params, model_names=None) -> "Predictor":
    names = tuple(model_names) if model_names is not None else self.model_names
    spec = self.spec
    if len(names) != spec.n_models:
      spec = dataclasses.replace(spec, n_models=len(names))
    return Predictor(kind=self.kind, spec=spec, params=params, model_names=names)


@functools.lru_cache(maxsize=32)
def _jitted_logits(kind: base.Kind, spec):
  if kind.prepared_logits is not None:
    return jax.jit(lambda prepared, v: kind.prepared_logits(prepared, v, spec))
  return jax.jit(lambda params, v: kind.logits(params, v, spec))


@dataclasses.dataclass(frozen=True)
class Run:
  """A restored checkpoint: its predictor plus what it was trained on."""
  workdir: str
  step: int
  config: ml_collections.ConfigDict
  index: dict                 # dataset, model_names, benchmark_names, embed_dim, encoder
  predictor: Predictor

  @property
  def model_names(self) -> list[str]:
    return list(self.predictor.model_names)

  @property
  def kind(self) -> base.Kind:
    return self.predictor.kind

  @property
  def encoder(self) -> dict | None:
    """The query encoder the run was trained with: name, model_dir, fingerprint."""
    return self.index.get("encoder")


def load(workdir: str, step: int | str = "best") -> Run:
  """Restores a run; `step` is 'best' (by val accuracy), 'latest' or a number."""
  checkpoints = ckpt_lib.Checkpoints(workdir, read_only=True)
  if step == "best":
    step = checkpoints.best_step()
  elif step == "latest":
    step = checkpoints.latest_step()
  step, _, config_dict, index = checkpoints.restore_json(None if step is None else int(step))
  state = checkpoints.restore_state(step)
  config = ml_collections.ConfigDict(config_dict)
  kind = models.for_config(config)
  spec = kind.spec(config.model, len(index["model_names"]), int(index["embed_dim"]))
  predictor = Predictor(kind=kind, spec=spec, params=dict(state["params"]),
                        model_names=tuple(index["model_names"]))
  return Run(workdir=workdir, step=step, config=config, index=index, predictor=predictor)
