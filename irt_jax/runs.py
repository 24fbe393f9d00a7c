"""A trained run as evaluation and routing see it: config, index maps, params.

Everything comes from the workdir's checkpoints; no training flag is repeated.
"""

from __future__ import annotations

import dataclasses

import ml_collections
import numpy as np

from irt_jax import checkpoint as ckpt_lib
from irt_jax import model as model_lib


@dataclasses.dataclass(frozen=True)
class Run:
  workdir: str
  step: int
  config: ml_collections.ConfigDict
  index: dict                 # dataset, model_names, benchmark_names, embed_dim
  params: model_lib.Params    # host numpy
  spec: model_lib.ModelSpec

  @property
  def model_names(self) -> list[str]:
    return list(self.index["model_names"])

  def predict_proba(self, embeddings: np.ndarray) -> np.ndarray:
    """P(correct) [N, M] for query embeddings [N, D]."""
    embeddings = np.asarray(embeddings)
    if embeddings.ndim != 2 or embeddings.shape[1] != self.spec.input_dim:
      raise ValueError(f"embeddings of shape {embeddings.shape} do not fit this run, which "
                       f"reads {self.spec.input_dim}-d query embeddings")
    return model_lib.predict_proba(self.params, embeddings, self.spec)


def load_run(workdir: str, step: int | str = "best") -> Run:
  """Restores a run; `step` is 'best' (by val accuracy), 'latest' or a number."""
  checkpoints = ckpt_lib.Checkpoints(workdir, read_only=True)
  if step == "best":
    step = checkpoints.best_step()
  elif step == "latest":
    step = checkpoints.latest_step()
  step, _, config_dict, index = checkpoints.restore_json(None if step is None else int(step))
  state = checkpoints.restore_state(step)
  config = ml_collections.ConfigDict(config_dict)
  spec = model_lib.ModelSpec.from_config(config.model, len(index["model_names"]),
                                         int(index["embed_dim"]))
  params = {k: v for k, v in state["params"].items()}
  return Run(workdir=workdir, step=step, config=config, index=index,
             params=params, spec=spec)
