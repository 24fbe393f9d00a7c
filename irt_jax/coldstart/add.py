"""Adding a new LLM to a trained run from a few of its answers, without retraining.

The library behind `python -m irt_jax add-model`: read the new LLM's answers
(`read_responses`), find the item parameters of the queries it answered
(`answer_items`, embedding queries the run has not seen with its recorded
encoder: `embed_new`), fit its ability by MAP (coldstart.ability) and write the
run plus the new LLM as a new checkpoint directory (`save_run`); or propose the
queries whose answers would tell most about it. `add` does it all. The old run
is read, never written (data.resolve.load_for_run).
"""

from __future__ import annotations

import csv
import os
import re
import sys

import numpy as np
from absl import logging

from irt_jax import checkpoint as ckpt_lib
from irt_jax import predictors
from irt_jax.coldstart import ability as coldstart
from irt_jax.data import io as data_lib
from irt_jax.data import resolve


def read_responses(path: str) -> tuple[list[str], np.ndarray, list[str] | None]:
  """(prompt ids, labels, prompts or None) of a responses file, checked."""
  frame = data_lib.read_table(path, ["prompt_id", "label"], "the new model's answers")
  labels = data_lib._parse_labels(frame, path)  # one home for the 0/1 rule and its message
  ids = frame["prompt_id"].str.strip()
  dup = ids[ids.duplicated()]
  if len(dup):
    raise data_lib.DataError(f"{path}: prompt_id {dup.iloc[0]!r} is answered twice "
                             f"(row {int(dup.index[0]) + 2})")
  prompts = list(frame["prompt"]) if "prompt" in frame.columns else None
  return list(ids), labels, prompts


def default_out(workdir: str, name: str) -> str:
  slug = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "new"
  return f"{os.path.normpath(workdir)}+{slug}"


def embed_new(run: predictors.Run, texts: list[str], encoder_dir: str | None) -> np.ndarray:
  """Embeddings of queries the run has not seen, with the run's encoder."""
  record = run.encoder or {}
  folder = encoder_dir or record.get("model_dir")
  if not folder:
    raise coldstart.ColdStartError(
        f"{len(texts)} quer(ies) are new to this run and must be embedded, but the run records "
        f"no encoder folder (its embeddings were made by {record.get('name', 'an unknown encoder')}"
        f"); pass --encoder_dir=a folder holding that encoder")
  if record.get("fingerprint") and encoder_dir:
    if resolve.weights_fingerprint(encoder_dir) != record["fingerprint"]:
      raise coldstart.ColdStartError(f"{encoder_dir}: not the encoder this run was trained with "
                                     f"({record.get('name')}, weights differ)")
  from irt_jax.encoder import load_encoder  # heavy: only when text must be encoded
  encoder = load_encoder(folder, max_length=record.get("max_length"))
  emb = np.asarray(encoder.encode(texts), np.float32)
  if emb.shape[1] != run.predictor.input_dim:
    raise coldstart.ColdStartError(f"{folder}: gives {emb.shape[1]}-d embeddings, but the run "
                                   f"reads {run.predictor.input_dim}-d ones (encoder "
                                   f"{record.get('name')})")
  return emb


def answer_items(run, data, ids, prompts, encoder_dir, path):
  """Item parameters (a, b) for the answered queries, embedding unseen ones."""
  return coldstart.item_parameters(run.predictor,
                                   answer_embeddings(run, data, ids, prompts, encoder_dir, path))


def answer_embeddings(run, data, ids, prompts, encoder_dir, path) -> np.ndarray:
  """Embeddings of the answered queries: the data's rows, unseen ones encoded."""
  row = {q: i for i, q in enumerate(data.query_ids)}
  seen = np.array([q in row for q in ids], bool)
  emb = np.zeros((len(ids), run.predictor.input_dim), np.float32)
  emb[seen] = data.embeddings[[row[q] for q, s in zip(ids, seen) if s]]
  if (~seen).any():
    texts = [] if prompts is None else [prompts[i] for i in np.flatnonzero(~seen)]
    empty = [ids[i] for i, t in zip(np.flatnonzero(~seen), texts) if not str(t).strip()]
    if prompts is None or empty:
      missing = [ids[i] for i in np.flatnonzero(~seen)] if prompts is None else empty
      raise data_lib.DataError(
          f"{path}: {len(missing)} prompt_id(s) the run has not seen, e.g. {missing[:3]}, come "
          f"without their text; add a 'prompt' column for them")
    emb[~seen] = embed_new(run, texts, encoder_dir)
  return emb


def save_run(run: predictors.Run, out: str, name: str, theta: np.ndarray | None, n_answers: int,
             data_folder: str, predictor=None) -> str:
  """Writes the run plus the new model (given `theta`, or the extended `predictor`)
  as a new checkpoint directory."""
  if predictor is None:
    predictor = coldstart.with_new_models(run.predictor, [name], theta[None, :])
  source = ckpt_lib.Checkpoints(run.workdir, read_only=True)
  _, src_meta, _, _ = source.restore_json(run.step)
  config = run.config.to_dict()
  config["data"]["dir"] = config["data"]["dir"] or os.path.abspath(data_folder)
  index = {**run.index, "model_names": list(predictor.model_names)}
  best = {**(src_meta.get("best") or {}), "step": int(run.step)}
  added = list(src_meta.get("added_models", [])) + [
      {"name": name, "answers": int(n_answers), "from": os.path.abspath(run.workdir),
       "from_step": int(run.step)}]
  # The source's history and data layout (what its parameters were trained on);
  # no controllers: a run with added models is not trained further.
  meta = ckpt_lib.run_meta(step=run.step, seed=src_meta.get("seed"),
                           history=src_meta.get("history", []), best=best, stopped=True,
                           layout=src_meta.get("layout"), added_models=added,
                           ability_updates=src_meta.get("ability_updates", []))
  return ckpt_lib.save_derived_run(out, run.step, predictor.params, meta=meta, config=config,
                                   index=index)


def add(workdir: str, name: str, responses: str | None, out: str | None = None,
        propose: int = 0, encoder_dir: str | None = None, step="best",
        stream=sys.stdout) -> dict:
  """The CLI's work; raises DataError / CheckpointError / ColdStartError on bad input."""
  if not responses and propose <= 0:
    raise coldstart.ColdStartError("give --responses (answers to fit) and/or --propose=K")
  run = predictors.load(workdir, step if step in ("best", "latest") else int(step))
  if run.kind.takes_members and propose > 0:
    raise coldstart.ColdStartError("--propose reads a run's item parameters; an ensemble has "
                                   "none of its own: propose with its IrtNet member's run")
  if not run.kind.takes_members:
    coldstart.irt_view(run.kind)
  if name in run.model_names:
    raise coldstart.ColdStartError(f"{workdir}: already has a model named {name!r}; choose "
                                   f"another --name")
  out = out or default_out(workdir, name)
  if os.path.abspath(out) == os.path.abspath(workdir):
    raise coldstart.ColdStartError("--out must differ from --workdir (the old run is kept)")
  if responses and os.path.exists(os.path.join(out, "checkpoints")):
    raise coldstart.ColdStartError(f"{out}: already holds a run; choose another --out")
  folder = resolve.folder(run.config, workdir)
  # Read without writing into the old run, through the parsed copy its training
  # left (same request as training's); nothing is written before the inputs are
  # known to be good.
  data = resolve.load_for_run(run.config, workdir, require=("train", "val"))
  if run.kind.takes_members:
    return _add_to_ensemble(run, data, name, responses, out, encoder_dir, folder)
  prior = coldstart.prior_from_abilities(coldstart.abilities(run.predictor))
  ids, labels, prompts = [], np.zeros(0, np.int8), None
  a = np.zeros((0, len(prior.mean)))
  b = np.zeros(0)
  if responses:
    ids, labels, prompts = read_responses(responses)
    a, b = answer_items(run, data, ids, prompts, encoder_dir, responses)
  theta, precision = coldstart.fit_ability(a, b, labels, prior)
  result = {"name": name, "answers": len(ids), "theta": theta}
  if responses:
    result["out"] = save_run(run, out, name, theta, len(ids), folder)
    logging.info("added %s from %d answers: %s", name, len(ids), out)
  if propose > 0:
    pool_a, pool_b = coldstart.item_parameters(run.predictor, data.embeddings)
    answered = {q for q in ids}
    exclude = [i for i, q in enumerate(data.query_ids) if q in answered]
    picks = coldstart.propose(pool_a, pool_b, theta, precision, propose, exclude=exclude)
    writer = csv.writer(stream)
    writer.writerow(["prompt_id", "prompt"])
    for i in picks:
      writer.writerow([data.query_ids[i], data.prompts[i] if data.prompts else ""])
    result["proposed"] = [data.query_ids[i] for i in picks]
  return result


def _add_to_ensemble(run, data, name, responses, out, encoder_dir, folder) -> dict:
  """An ensemble run plus the new LLM: each member that can takes it (members.py)."""
  from irt_jax.coldstart import feedback, members
  ids, labels, prompts = read_responses(responses)
  emb = answer_embeddings(run, data, ids, prompts, encoder_dir, responses)
  records = [{"query": q, "model": name, "correct": int(y)} for q, y in zip(ids, labels)]
  predictor, _, notes = members.refit(run.predictor, emb, records, new=[name], prior_scale=1.0,
                                      irt_refit=feedback.refit)
  path = save_run(run, out, name, None, len(ids), folder, predictor=predictor)
  logging.info("added %s to the ensemble from %d answers: %s (%s)", name, len(ids), out,
               "; ".join(notes))
  return {"name": name, "answers": len(ids), "out": path, "members": notes}
