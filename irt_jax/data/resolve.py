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

Every function takes the run's `DataSpec` (its `data` and `encoder` fields,
typed, built once by `DataSpec.from_config`), or a config it is built from.

Cache folder: set the environment variable IRT_JAX_CACHE_DIR to keep every
parsed copy (training's and readers') in one folder of your choice instead;
copies are named by their sources' content, so runs can share it.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import uuid

import jax
from absl import logging

from irt_jax.data import io as data_lib
from irt_jax.data import cache as data_cache
from irt_jax.data import synthetic


@dataclasses.dataclass(frozen=True)
class DataSpec:
  """Where a run's data comes from and which encoder made (or makes) its query
  embeddings: `config.data` and `config.encoder`."""
  dir: str                   # '' = synthetic data generated in the workdir
  benchmarks: str
  embeddings_file: str
  synthetic: tuple           # (field, value) pairs of config.data.synthetic
  encoder_name: str
  encoder_model_dir: str
  encoder_batch_size: int
  encoder_max_length: int    # 0 = the encoder's own

  @classmethod
  def from_config(cls, config) -> "DataSpec":
    data, encoder = config.data, config.encoder
    return cls(dir=data.dir, benchmarks=data.benchmarks, embeddings_file=data.embeddings_file,
               synthetic=tuple(sorted(dict(data.synthetic).items())),
               encoder_name=encoder.name, encoder_model_dir=encoder.model_dir,
               encoder_batch_size=encoder.batch_size, encoder_max_length=encoder.max_length)


def data_spec(source) -> DataSpec:
  """`source` as a DataSpec (a config is read once into one)."""
  return source if isinstance(source, DataSpec) else DataSpec.from_config(source)


def synthetic_spec(source) -> synthetic.SyntheticSpec:
  return synthetic.SyntheticSpec(**dict(data_spec(source).synthetic))


def folder(source, workdir: str) -> str:
  """The folder the run reads (for the synthetic data, where it is generated)."""
  return data_spec(source).dir or os.path.join(workdir, "synthetic_data")


def prepare_folder(source, workdir: str) -> str:
  """`folder`, generating the synthetic data there first if it is absent."""
  spec = data_spec(source)
  out = folder(spec, workdir)
  if spec.dir:
    return out
  if not os.path.exists(os.path.join(out, "test.csv")):
    # Written aside then renamed into place: processes of a multi-process job
    # sharing the workdir all generate the same data; the first rename wins and
    # nobody reads a half-written folder.
    logging.info("Generating synthetic data in %s", out)
    tmp = f"{out}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    synthetic.write(tmp, synthetic_spec(spec))
    try:
      os.rename(tmp, out)
    except OSError:
      shutil.rmtree(tmp, ignore_errors=True)
      if not os.path.exists(os.path.join(out, "test.csv")):
        raise
  return out


def embeddings_path(source, workdir: str, folder: str) -> str:
  """Where a text-only folder's embeddings go: beside the data if writable,
  else in the workdir."""
  name = data_spec(source).embeddings_file
  if os.access(folder, os.W_OK):
    return os.path.join(folder, name)
  return os.path.join(workdir, name)


def encode_if_needed(source, workdir: str, folder: str) -> str | None:
  """Encodes a folder's prompts once (resumably) when it has no embeddings."""
  spec = data_spec(source)
  if os.path.exists(os.path.join(folder, spec.embeddings_file)):
    return None
  if not spec.encoder_model_dir:
    return None  # load_dataset explains what is missing
  out = embeddings_path(spec, workdir, folder)
  if not os.path.exists(out):
    if jax.process_count() > 1:
      raise data_lib.DataError(
          f"{folder}: no {spec.embeddings_file}; encode it once before a multi-process "
          f"job: python -m irt_jax encode --data_dir={folder} "
          f"--model_dir={spec.encoder_model_dir} --output={out}")
    from irt_jax.data import encode  # heavy: only when text must be encoded
    logging.info("Encoding the prompts of %s with %s into %s", folder,
                 spec.encoder_model_dir, out)
    encode.encode_question_order(folder, spec.encoder_model_dir, output=out,
                                 batch_size=spec.encoder_batch_size,
                                 max_length=spec.encoder_max_length or None)
  return out


CACHE_DIR_ENV = "IRT_JAX_CACHE_DIR"


def _cache_dir(default: str | None) -> str | None:
  """Where parsed copies are written: $IRT_JAX_CACHE_DIR when set, else `default`."""
  return os.environ.get(CACHE_DIR_ENV) or default


def prepare_and_load(source, workdir: str, require=("train", "val")) -> data_lib.ResponseData:
  """The data of the run being written in `workdir`. First prepares what is
  missing, once: generates the synthetic data, encodes a text-only folder's
  prompts, keeps a parsed copy in `workdir/data_cache` (a run's resume reads the
  same folder again; never written beside shared or read-only data)."""
  spec = data_spec(source)
  path = prepare_folder(spec, workdir)
  cache = encode_if_needed(spec, workdir, path)
  return data_cache.load_and_cache(path, _cache_dir(os.path.join(workdir, "data_cache")),
                                   benchmarks=spec.benchmarks,
                                   embeddings_file=spec.embeddings_file,
                                   embeddings_cache=cache, require=require)


def load_for_run(source, workdir: str, require=("train", "val")) -> data_lib.ResponseData:
  """The data of the trained run in `workdir`, read without writing there.

  What training prepared must exist (its synthetic data, a text-only folder's
  encoded prompts): a missing part is a DataError naming it, not regenerated
  into the run. The parsed copy in `workdir/data_cache` is used when training
  left one for the same request; a new copy goes to $IRT_JAX_CACHE_DIR if the
  user set it, else nowhere.
  """
  spec = data_spec(source)
  path = folder(spec, workdir)
  if not os.path.isdir(path):
    raise data_lib.DataError(f"{path}: the data of the run in {workdir} is not there "
                             f"(config.data.dir={spec.dir!r})")
  encoded = None
  if not os.path.exists(os.path.join(path, spec.embeddings_file)):
    candidate = os.path.join(workdir, spec.embeddings_file)
    encoded = candidate if os.path.exists(candidate) else None  # else load_dataset explains
  return data_cache.load_and_cache(path, _cache_dir(None), benchmarks=spec.benchmarks,
                                   embeddings_file=spec.embeddings_file,
                                   embeddings_cache=encoded, require=require,
                                   read_from=[os.path.join(workdir, "data_cache")])


def encoder_record(source, workdir: str) -> dict:
  """Which encoder made the run's query embeddings, for routing new text.

  With `encoder.model_dir` set, the folder and a fingerprint of its weights: it
  is the folder that encodes a text-only folder's prompts, and the embeddings it
  caches beside the data must not turn the record into 'shipped' on the next
  start (training reads the data, hence encodes, before it records this).
  Without it, the encoder's name only (a Router must then be given a folder
  holding that encoder).
  """
  spec = data_spec(source)
  path = folder(spec, workdir)
  if spec.encoder_model_dir:
    model_dir = os.path.abspath(spec.encoder_model_dir)
    return {"name": os.path.basename(os.path.normpath(model_dir)), "model_dir": model_dir,
            "fingerprint": weights_fingerprint(model_dir),
            "max_length": int(spec.encoder_max_length) or None}
  return {"name": spec.encoder_name, "model_dir": None, "fingerprint": None,
          "max_length": int(spec.encoder_max_length) or None,
          "embeddings": os.path.join(os.path.abspath(path), spec.embeddings_file)}


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
