"""Resolve a config's `data` section to a ResponseData.

`data.dir = ''` means the synthetic dataset, generated once into
`workdir/synthetic_data`; otherwise a folder in the EmbedLLM/IrtNet layout. A
folder without query embeddings is encoded once with `encoder.model_dir`.
"""

from __future__ import annotations

import os
import shutil
import uuid

from absl import logging

from irt_jax import data as data_lib
from irt_jax import synthetic


def synthetic_spec(config) -> synthetic.SyntheticSpec:
  return synthetic.SyntheticSpec(**dict(config.data.synthetic))


def data_dir(config, workdir: str) -> str:
  """The folder the run reads (the synthetic one is generated if absent)."""
  if config.data.dir:
    return config.data.dir
  out = os.path.join(workdir, "synthetic_data")
  if not os.path.exists(os.path.join(out, "test.csv")):
    # Written aside then renamed into place: processes of a multi-process job
    # sharing the workdir all generate the same data; the first rename wins and
    # nobody reads a half-written folder.
    logging.info("Generating synthetic data in %s", out)
    tmp = f"{out}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    synthetic.write(tmp, synthetic_spec(config))
    try:
      os.rename(tmp, out)
    except OSError:
      shutil.rmtree(tmp, ignore_errors=True)
      if not os.path.exists(os.path.join(out, "test.csv")):
        raise
  return out


def _embedder(config):
  model_dir = config.encoder.model_dir
  if not model_dir:
    return None

  def embed(texts):
    from irt_jax.encoder import load_encoder  # heavy: only when text must be encoded
    encoder = load_encoder(model_dir, max_length=config.encoder.max_length or None)
    logging.info("Encoding %d queries with %s", len(texts), encoder.name)
    return encoder.encode(texts, batch_size=config.encoder.batch_size, progress=True)

  return embed


def load(config, workdir: str, require=("train", "val")) -> data_lib.ResponseData:
  folder = data_dir(config, workdir)
  cache = None
  if config.encoder.model_dir and not os.access(folder, os.W_OK):
    cache = os.path.join(workdir, config.data.embeddings_file)
  return data_lib.load_dataset(folder, benchmarks=config.data.benchmarks,
                               embeddings_file=config.data.embeddings_file,
                               embed_fn=_embedder(config), embeddings_cache=cache,
                               require=require)
