"""Resolve a config's `data` section to a ResponseData.

`data.dir = ''` means the synthetic dataset, generated once into
`workdir/synthetic_data`; otherwise a folder in the EmbedLLM/IrtNet layout. A
folder without query embeddings is encoded once with `encoder.model_dir`.

Two ways in. `prepare_and_load` is for the run being written (training): it
prepares what is missing there and keeps a parsed copy of the data (data.cache)
in `workdir/data_cache`. `load_for_run` is for a run being read (eval, compare,
add_model): it writes nothing into that run's workdir, so a run on a read-only
volume can be evaluated, extended and served, and reading a run leaves it as it
was; it reads the copy training left there and writes none of its own.

Cache folder: set the environment variable IRT_JAX_CACHE_DIR to keep every
parsed copy (training's and readers') in one folder of your choice instead;
copies are named by their sources' content, so runs can share it.
"""

from __future__ import annotations

import os
import shutil
import uuid

import jax
from absl import logging

from irt_jax.data import io as data_lib
from irt_jax.data import cache as data_cache
from irt_jax.data import synthetic


def synthetic_spec(config) -> synthetic.SyntheticSpec:
  return synthetic.SyntheticSpec(**dict(config.data.synthetic))


def folder(config, workdir: str) -> str:
  """The folder the run reads (for the synthetic data, where it is generated)."""
  return config.data.dir or os.path.join(workdir, "synthetic_data")


def prepare_folder(config, workdir: str) -> str:
  """`folder`, generating the synthetic data there first if it is absent."""
  out = folder(config, workdir)
  if config.data.dir:
    return out
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


def embeddings_path(config, workdir: str, folder: str) -> str:
  """Where a text-only folder's embeddings go: beside the data if writable,
  else in the workdir."""
  if os.access(folder, os.W_OK):
    return os.path.join(folder, config.data.embeddings_file)
  return os.path.join(workdir, config.data.embeddings_file)


def encode_if_needed(config, workdir: str, folder: str) -> str | None:
  """Encodes a folder's prompts once (resumably) when it has no embeddings."""
  if os.path.exists(os.path.join(folder, config.data.embeddings_file)):
    return None
  if not config.encoder.model_dir:
    return None  # load_dataset explains what is missing
  out = embeddings_path(config, workdir, folder)
  if not os.path.exists(out):
    if jax.process_count() > 1:
      raise data_lib.DataError(
          f"{folder}: no {config.data.embeddings_file}; encode it once before a multi-process "
          f"job: python -m irt_jax encode --data_dir={folder} "
          f"--model_dir={config.encoder.model_dir} --output={out}")
    from irt_jax.data import encode  # heavy: only when text must be encoded
    logging.info("Encoding the prompts of %s with %s into %s", folder,
                 config.encoder.model_dir, out)
    encode.encode_question_order(folder, config.encoder.model_dir, output=out,
                                 batch_size=config.encoder.batch_size,
                                 max_length=config.encoder.max_length or None)
  return out


CACHE_DIR_ENV = "IRT_JAX_CACHE_DIR"


def _cache_dir(default: str | None) -> str | None:
  """Where parsed copies are written: $IRT_JAX_CACHE_DIR when set, else `default`."""
  return os.environ.get(CACHE_DIR_ENV) or default


def prepare_and_load(config, workdir: str, require=("train", "val")) -> data_lib.ResponseData:
  """The data of the run being written in `workdir`. First prepares what is
  missing, once: generates the synthetic data, encodes a text-only folder's
  prompts, keeps a parsed copy in `workdir/data_cache` (a run's resume reads the
  same folder again; never written beside shared or read-only data)."""
  path = prepare_folder(config, workdir)
  cache = encode_if_needed(config, workdir, path)
  return data_cache.load_and_cache(path, _cache_dir(os.path.join(workdir, "data_cache")),
                                   benchmarks=config.data.benchmarks,
                                   embeddings_file=config.data.embeddings_file,
                                   embeddings_cache=cache, require=require)


def load_for_run(config, workdir: str, require=("train", "val")) -> data_lib.ResponseData:
  """The data of the trained run in `workdir`, read without writing there.

  What training prepared must exist (its synthetic data, a text-only folder's
  encoded prompts): a missing part is a DataError naming it, not regenerated
  into the run. The parsed copy in `workdir/data_cache` is used when training
  left one for the same request; a new copy goes to $IRT_JAX_CACHE_DIR if the
  user set it, else nowhere.
  """
  path = folder(config, workdir)
  if not os.path.isdir(path):
    raise data_lib.DataError(f"{path}: the data of the run in {workdir} is not there "
                             f"(config.data.dir={config.data.dir!r})")
  encoded = None
  if not os.path.exists(os.path.join(path, config.data.embeddings_file)):
    candidate = os.path.join(workdir, config.data.embeddings_file)
    encoded = candidate if os.path.exists(candidate) else None  # else load_dataset explains
  return data_cache.load_and_cache(path, _cache_dir(None), benchmarks=config.data.benchmarks,
                                   embeddings_file=config.data.embeddings_file,
                                   embeddings_cache=encoded, require=require,
                                   read_from=[os.path.join(workdir, "data_cache")])


def encoder_record(config, workdir: str) -> dict:
  """Which encoder made the run's query embeddings, for routing new text.

  With `encoder.model_dir` set, the folder and a fingerprint of its weights: it
  is the folder that encodes a text-only folder's prompts, and the embeddings it
  caches beside the data must not turn the record into 'shipped' on the next
  start (training reads the data, hence encodes, before it records this).
  Without it, the encoder's name only (a Router must then be given a folder
  holding that encoder).
  """
  path = folder(config, workdir)
  if config.encoder.model_dir:
    model_dir = os.path.abspath(config.encoder.model_dir)
    return {"name": os.path.basename(os.path.normpath(model_dir)), "model_dir": model_dir,
            "fingerprint": weights_fingerprint(model_dir),
            "max_length": int(config.encoder.max_length) or None}
  return {"name": config.encoder.name, "model_dir": None, "fingerprint": None,
          "max_length": int(config.encoder.max_length) or None,
          "embeddings": os.path.join(os.path.abspath(path), config.data.embeddings_file)}


def weights_fingerprint(model_dir: str) -> str:
  """sha256 over an encoder folder's safetensors files (names and bytes)."""
  import hashlib
  from irt_jax.utils import update_hash
  h = hashlib.sha256()
  for root, _, files in sorted(os.walk(model_dir)):
    for name in sorted(files):
      if name.endswith(".safetensors"):
        path = os.path.join(root, name)
        h.update(os.path.relpath(path, model_dir).encode())
        update_hash(h, path)
  return h.hexdigest()
