r"""Distils a sentence-transformers model into a static query encoder (``irt_jax.encoder.static``).

    irt-jax distill --model_dir=.models/all-mpnet-base-v2 \
        --out=.models/static-mpnet [--dim=256] [--weighting=sif|zipf|uniform] [--sif_a=1e-3] \
        [--weights_from=DATA_DIR,...] [--batch_size=512] [--work_dir=DIR] [--overwrite]

1. Every vocabulary token t runs through the transformer as the one-token text
   ``[CLS] t [SEP]``, its outputs mean-pooled without normalisation
   (``static.token_vectors``): raw vectors [V, H]. This is the long part (30,527 MPNet
   forward passes of 3 tokens); it is saved chunk by chunk in ``--work_dir``
   (default ``OUT.work``), so an interrupted build resumes, and a later build from the
   same model with another ``--dim`` or ``--weighting`` reuses it.
2. PCA to ``--dim`` dimensions, fitted on the non-special tokens.
3. Token weights: ``sif`` = a / (a + p(t)) with p the token frequencies in the
   **training** prompts (train split only) of the ``--weights_from`` data folders;
   ``zipf`` = the same with p from the token's vocabulary rank; ``uniform`` = 1.
   Special tokens weigh 0.
4. The folder: ``vectors.safetensors``, ``static_encoder.json``, ``tokenizer.json``.

It lives in the data layer because the SIF weights read the training split of a data
folder; ``load_encoder`` loads the result like any encoder folder.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from irt_jax.errors import UserError
from irt_jax.data import io as data_lib
from irt_jax.encoder import static

CHUNK = 4096  # tokens between two saves of the raw vectors


class DistillError(UserError, ValueError):
  """The build cannot go on (bad option, mismatched partial work, missing data)."""


def _raw_state(encoder, vocab: int) -> dict:
  return {"source": encoder.name, "source_fingerprint": encoder.fingerprint, "vocab": vocab,
          "hidden": encoder.net_cfg.hidden_size, "rows_done": 0}


def raw_vectors(encoder, work_dir: Path, batch_size: int) -> np.ndarray:
  """[V, H] one-token-text vectors of every id of ``encoder``'s vocabulary, computed
  once into ``work_dir/raw_vectors.npy`` (resumed from ``raw.partial.npy`` after an
  interruption; refused if the partial work is another model's)."""
  tok = encoder.tokenizer
  if tok.cls_token_id is None or tok.sep_token_id is None:
    raise DistillError(f"{encoder.model_dir}: the tokenizer has no CLS / SEP token")
  vocab = int(encoder.params["embed"]["word"].shape[0])
  work_dir.mkdir(parents=True, exist_ok=True)
  done_file, partial, state_file = (work_dir / "raw_vectors.npy", work_dir / "raw.partial.npy",
                                    work_dir / "raw.json")
  state = _raw_state(encoder, vocab)
  old = json.loads(state_file.read_text()) if state_file.exists() else None
  if old is not None and {k: old.get(k) for k in state if k != "rows_done"} != {
      k: v for k, v in state.items() if k != "rows_done"}:
    raise DistillError(f"{work_dir} holds raw vectors of another model ({old.get('source')}); "
                       f"pass another --work_dir or delete it")
  if old is not None and done_file.exists():
    return np.load(done_file, allow_pickle=False)
  if old is not None and partial.exists():
    store, state["rows_done"] = np.lib.format.open_memmap(partial, mode="r+"), old["rows_done"]
  else:
    store = np.lib.format.open_memmap(partial, mode="w+", dtype=np.float32,
                                      shape=(vocab, state["hidden"]))
  _fill(encoder, store, state, state_file, batch_size)
  store.flush()
  del store
  os.replace(partial, done_file)
  return np.load(done_file, allow_pickle=False)


def _fill(encoder, store, state: dict, state_file: Path, batch_size: int) -> None:
  """Computes the rows not done yet, CHUNK at a time, saving the array then the state."""
  from irt_jax.utils import write_json
  tok, vocab, t0, start = encoder.tokenizer, store.shape[0], time.perf_counter(), state[
      "rows_done"]
  while state["rows_done"] < vocab:
    lo = state["rows_done"]
    hi = min(vocab, lo + CHUNK)
    for b in range(lo, hi, batch_size):
      ids = np.arange(b, min(hi, b + batch_size))
      padded = np.concatenate([ids, np.zeros(batch_size - len(ids), ids.dtype)])  # one shape
      store[b:b + len(ids)] = static.token_vectors(encoder, padded, tok.cls_token_id,
                                                   tok.sep_token_id)[:len(ids)]
    store.flush()
    state["rows_done"] = hi
    write_json(state_file, state)
    rate = (hi - start) / (time.perf_counter() - t0)
    print(f"token vectors {hi}/{vocab} ({rate:.0f} tokens/s)", file=sys.stderr, flush=True)


def tokenizer_json(encoder) -> str:
  """The source's tokenizer as tokenizer.json text (the static folder's tokenizer)."""
  if not getattr(encoder.tokenizer, "is_fast", False):
    raise DistillError(f"{encoder.model_dir}: a fast (Rust) tokenizer is needed, e.g. a "
                       f"tokenizer.json in the folder")
  return encoder.tokenizer.backend_tokenizer.to_str()


def training_token_counts(data_dirs: list[str], encoder, vocab: int) -> tuple[np.ndarray, int]:
  """Token counts [vocab] over the prompts of the train split of each data folder (val
  and test prompts are never read), tokenised as the static encoder will tokenise."""
  tokenizer = static.open_tokenizer(text=tokenizer_json(encoder))
  counts, n = np.zeros(vocab, np.int64), 0
  for d in data_dirs:
    data = data_lib.load_dataset(d, splits=("train",), require=("train",))
    if data.prompts is None:
      raise DistillError(f"{d}: no prompt text, so no token frequencies to weight by")
    rows = np.unique(data.split("train").queries)
    ids = static.tokenize(tokenizer, [data.prompts[r] for r in rows], encoder.max_length,
                          encoder.do_lower_case)
    counts += np.bincount(np.concatenate([np.asarray(x, np.int64) for x in ids] or [[]]),
                          minlength=vocab)[:vocab]
    n += len(rows)
  return counts, n


def token_weights(weighting: str, vocab: int, special: list[int], a: float,
                  counts: np.ndarray | None) -> np.ndarray:
  """The weights of one ``weighting`` (see the module docstring), specials at 0."""
  if weighting == "uniform":
    w = np.ones(vocab, np.float32)
  elif weighting == "zipf":
    w = static.zipf_weights(vocab, a)
  elif weighting == "sif":
    if counts is None:
      raise DistillError("--weighting=sif needs --weights_from=DATA_DIR[,...] (training prompts)")
    w = static.sif_weights(counts, a)
  else:
    raise DistillError(f"weighting must be one of {static.WEIGHTINGS}, got {weighting!r}")
  w[special] = 0.0
  return w


def build(model_dir: str, out: str, dim: int = 256, weighting: str = "sif", sif_a: float = 1e-3,
          weights_from: list[str] | None = None, batch_size: int = 512,
          work_dir: str | None = None, overwrite: bool = False) -> Path:
  """Library form of the CLI; returns the folder written."""
  from irt_jax.encoder import load_encoder
  out_dir = Path(out)
  if (out_dir / static.CONFIG_FILE).exists() and not overwrite:
    raise DistillError(f"{out_dir} already holds a static encoder; pass --overwrite")
  if weighting not in static.WEIGHTINGS:
    raise DistillError(f"weighting must be one of {static.WEIGHTINGS}, got {weighting!r}")
  encoder = load_encoder(model_dir)
  if isinstance(encoder, static.StaticEncoder):
    raise DistillError(f"{model_dir} is already a static encoder; pass the transformer's folder")
  tok_json = tokenizer_json(encoder)
  raw = raw_vectors(encoder, Path(work_dir or f"{out}.work"), batch_size)
  special = sorted(set(encoder.tokenizer.all_special_ids))
  normal = np.setdiff1d(np.arange(len(raw)), special)
  vectors = static.pca(raw, dim, fit_rows=normal)
  counts, n_prompts = None, 0
  if weighting == "sif":
    if not weights_from:
      raise DistillError("--weighting=sif needs --weights_from=DATA_DIR[,...] (training prompts)")
    counts, n_prompts = training_token_counts(weights_from, encoder, len(raw))
  weights = token_weights(weighting, len(raw), special, sif_a, counts)
  config = {"source": encoder.name, "source_fingerprint": encoder.fingerprint,
            "context": "[CLS] token [SEP], mean of the three outputs, not normalised",
            "pca_dim": dim, "weighting": weighting, "sif_a": sif_a,
            "weights_from": [os.path.abspath(d) for d in weights_from or []] if counts is not None
            else [], "train_prompts_counted": n_prompts, "max_length": encoder.max_length,
            "do_lower_case": encoder.do_lower_case}
  return static.save(out_dir, vectors, weights, config, tok_json)
