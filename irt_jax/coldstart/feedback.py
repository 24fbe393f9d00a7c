"""Feedback on routed answers: a durable log, and abilities refitted from it.

The log is JSON lines, one record per answer judged:

    {"time": 1764754000.1, "id": "chatcmpl-irt-...", "query": "What is 17 * 23?",
     "model": "gpt-4o-mini", "correct": 1}

`query` is the text the answer was to (the service writes it when it knows
the completion id), `model` the LLM by name, `correct` 0 or 1. Each record is
appended, flushed and fsynced before it is acknowledged, so a crash can lose
at most a record nobody was told was kept; such a record can only be the last
line, torn, and the reader skips it (and the writer, reopening the file, cuts
it off so the next record starts on a line of its own). A bad line anywhere
else is corruption, and an error naming the file and line.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
from collections.abc import Callable

import jax
import numpy as np

from irt_jax.errors import UserError
from irt_jax.coldstart import ability
from irt_jax.metrics import binary_metrics
from irt_jax.numerics import sigmoid

log = logging.getLogger("irt_jax.coldstart")

FIELDS = ("query", "model", "correct")


class FeedbackError(UserError, ValueError):
  """A feedback log or record that cannot be used; the message says where."""


def check_record(record, where: str) -> dict:
  """A record with a non-empty query, a model name and correct in {0, 1}."""
  if not isinstance(record, dict):
    raise FeedbackError(f"{where}: a feedback record must be a JSON object")
  missing = [k for k in FIELDS if k not in record]
  if missing:
    raise FeedbackError(f"{where}: missing field(s) {missing}; a record has {list(FIELDS)}")
  if not isinstance(record["query"], str) or not record["query"].strip():
    raise FeedbackError(f"{where}: 'query' must be the non-empty query text")
  if not isinstance(record["model"], str) or not record["model"]:
    raise FeedbackError(f"{where}: 'model' must be a model name")
  if record["correct"] not in (0, 1) or isinstance(record["correct"], float):
    raise FeedbackError(f"{where}: 'correct' must be 0 or 1, got {record['correct']!r}")
  return record


def read_feedback(path: str) -> list[dict]:
  """Every record of a feedback log, checked; a torn last line is skipped."""
  try:
    with open(path, "rb") as f:
      raw = f.read()
  except OSError as e:
    raise FeedbackError(f"{path}: cannot read the feedback log: {e.strerror or e}") from None
  lines = raw.split(b"\n")
  torn = lines.pop()                      # b"" when the file ends with a newline
  if torn.strip():
    log.warning("%s: skipping its torn last line (%d bytes; a write cut short)", path, len(torn))
  records = []
  for number, line in enumerate(lines, start=1):
    if not line.strip():
      continue
    try:
      record = json.loads(line)
    except (ValueError, UnicodeDecodeError) as e:
      raise FeedbackError(f"{path} line {number}: not JSON ({e})") from None
    records.append(check_record(record, f"{path} line {number}"))
  return records


class FeedbackLog:
  """Appends records durably (write, flush, fsync) from any thread."""

  def __init__(self, path: str):
    self.path = path
    self._lock = threading.Lock()
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    self._file = open(path, "a+b")
    self._cut_torn_tail()

  def _cut_torn_tail(self) -> None:
    """A last line without its newline was never acknowledged: cut it off."""
    size = self._file.seek(0, os.SEEK_END)
    if size == 0:
      return
    self._file.seek(max(size - 65536, 0))
    tail = self._file.read()
    if tail.endswith(b"\n"):
      return
    cut = tail.rfind(b"\n")
    keep = size - len(tail) + cut + 1 if cut >= 0 else (0 if size <= 65536 else None)
    if keep is None:
      raise FeedbackError(f"{self.path}: its last line is over 64 KiB and has no newline; "
                          f"not a feedback log?")
    log.warning("%s: cutting off a torn last line of %d bytes", self.path, size - keep)
    self._file.truncate(keep)
    self._file.flush()
    os.fsync(self._file.fileno())

  def append(self, record: dict) -> None:
    line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
    with self._lock:
      self._file.write(line)
      self._file.flush()
      os.fsync(self._file.fileno())

  def close(self) -> None:
    with self._lock:
      self._file.close()


# ----------------------------------------------------------------------------
# Learning from the log: the abilities of the models judged, refitted by MAP.

def split_heldout(records: list[dict], fraction: float, salt: str = "heldout") -> tuple[list, list]:
  """(fit, held out): each query's records go to one side, by a hash of its text,
  so a held-out query was never fitted on and the split is the same every run."""
  if not 0 <= fraction < 1:
    raise FeedbackError(f"the held-out fraction must be in [0, 1), got {fraction}")
  def held(text: str) -> bool:
    digest = hashlib.sha256(f"{salt}\0{text}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little") / 2.0 ** 64 < fraction
  fit, out = [], []
  for r in records:
    (out if held(r["query"]) else fit).append(r)
  return fit, out


def query_embeddings(texts: list[str], prompts, embeddings: np.ndarray,
                     embed: Callable[[list[str]], np.ndarray] | None) -> np.ndarray:
  """Embeddings [n, D] of query texts: the data's own row where the text is one
  of its prompts (exactly), else `embed(texts)` (the run's encoder)."""
  row = {p: i for i, p in enumerate(prompts or ()) if isinstance(p, str)}
  out = np.zeros((len(texts), embeddings.shape[1]), np.float32)
  seen = np.array([t in row for t in texts], bool)
  if seen.any():
    out[seen] = embeddings[[row[t] for t, s in zip(texts, seen) if s]]
  if (~seen).any():
    if embed is None:
      raise FeedbackError(f"{int((~seen).sum())} feedback quer(ies) are not prompts of the run's "
                          f"data and no encoder was given to embed them")
    out[~seen] = embed([t for t, s in zip(texts, seen) if not s])
  return out


def with_abilities(predictor, theta: np.ndarray):
  """The predictor with every model's ability replaced by `theta` [M, d]."""
  view = ability.irt_view(predictor.kind)
  params = jax.device_get(view.with_abilities(predictor.params,
                                              np.asarray(theta, np.float32)))
  return predictor.with_params(params, predictor.model_names)


def check_models(records: list[dict], names, add_new: bool) -> list[str]:
  """The models the records judge that the run lacks (an error unless `add_new`)."""
  unknown = sorted({r["model"] for r in records} - set(names))
  if unknown and not add_new:
    raise FeedbackError(f"feedback names model(s) {unknown[:5]} the run does not have (it has "
                        f"{', '.join(names)}); pass --add_new_models to add them")
  return unknown


def refit(predictor, embeddings: np.ndarray, records: list[dict], *, prior_scale: float = 1.0,
          add_new: bool = False):
  """(the predictor with the judged models' abilities refitted, a summary per model).

  Each judged model's ability is the MAP estimate from its feedback
  (`ability.fit_ability`) under a Gaussian prior centred on its trained
  ability, with the precision of the trained abilities' spread
  (`ability.prior_from_abilities`) times `prior_scale`: the feedback may move
  a model about as far as models differ from one another, more when it holds
  many answers. A model the run does not know (only with `add_new`) starts
  from the population prior, as cold start does. `embeddings` [n, D] are the
  records' queries; the query network and all other abilities stay as they are.
  """
  if prior_scale <= 0:
    raise FeedbackError(f"prior_scale must be > 0, got {prior_scale}")
  names = list(predictor.model_names)
  judged = sorted({r["model"] for r in records})
  unknown = check_models(records, names, add_new)
  theta = ability.abilities(predictor)
  population = ability.prior_from_abilities(theta)
  a, b = ability.item_parameters(predictor, embeddings)
  y = np.array([r["correct"] for r in records], np.float64)
  models = np.array([r["model"] for r in records])
  new_theta, added, summary = theta.copy(), {}, {}
  for name in judged:
    rows = models == name
    prior = population if name in unknown else ability.Prior(
        mean=theta[names.index(name)], precision=population.precision * prior_scale)
    fitted, _ = ability.fit_ability(a[rows], b[rows], y[rows], prior)
    if name in unknown:
      added[name] = fitted
    else:
      new_theta[names.index(name)] = fitted
    summary[name] = {"answers": int(rows.sum()), "correct": float(y[rows].mean()),
                     "new": name in unknown,
                     "ability_shift": float(np.linalg.norm(fitted - prior.mean))}
  out = with_abilities(predictor, new_theta)
  if added:
    out = ability.with_new_models(out, list(added), np.stack(list(added.values())))
  return out, summary


def compare(old, new, embeddings: np.ndarray, records: list[dict]) -> dict:
  """How the refit changed predictions and routing on held-out feedback.

  Log loss, accuracy and AUC of P(correct) on the records of models both
  predictors know (`metrics.binary_metrics`); the share of held-out queries
  whose route (the highest logit among the old run's models) changed, and the
  routes per model before and after; and, on queries judged for two or more
  models, the share answered correctly by the judged model each predictor
  ranks highest among them (routing measured where the feedback can tell).
  """
  texts = sorted({r["query"] for r in records})
  if not texts:
    return {"records": 0}
  row = {t: i for i, t in enumerate(texts)}
  first: dict[str, int] = {}
  for i, r in enumerate(records):
    first.setdefault(r["query"], i)
  emb = embeddings[[first[t] for t in texts]]
  names = list(old.model_names)
  z_old = np.asarray(old.logits(emb), np.float64)
  z_new = np.asarray(new.logits(emb), np.float64)[:, :len(names)]   # new models come last
  kept = [r for r in records if r["model"] in names]
  q = np.array([row[r["query"]] for r in kept], np.int64)
  m = np.array([names.index(r["model"]) for r in kept], np.int64)
  y = np.array([r["correct"] for r in kept], np.float64)
  report = {"records": len(records), "queries": len(texts), "scored_records": len(kept)}
  if kept:
    report["before"] = binary_metrics(sigmoid(z_old[q, m]), y)
    report["after"] = binary_metrics(sigmoid(z_new[q, m]), y)
  route_old, route_new = z_old.argmax(1), z_new.argmax(1)
  report["routes_changed"] = float((route_old != route_new).mean())
  report["routes_before"] = {names[j]: int(c) for j, c in zip(*np.unique(route_old, return_counts=True))}
  report["routes_after"] = {names[j]: int(c) for j, c in zip(*np.unique(route_new, return_counts=True))}
  report.update(_judged_routing(z_old, z_new, q, m, y))
  return report


def _judged_routing(z_old, z_new, q, m, y) -> dict:
  """Routing accuracy among the models judged on each query (2 or more)."""
  known = np.zeros(z_old.shape, bool)
  label = np.zeros(z_old.shape)
  known[q, m] = True
  label[q, m] = y
  rows = np.flatnonzero(known.sum(1) >= 2)
  if not len(rows):
    return {"judged_routing": None}
  pick = lambda z: np.where(known[rows], z[rows], -np.inf).argmax(1)
  return {"judged_routing": {"queries": int(len(rows)),
                             "before": float(label[rows, pick(z_old)].mean()),
                             "after": float(label[rows, pick(z_new)].mean())}}


def save(run, predictor, out: str, data_folder: str, record: dict) -> str:
  """Writes `predictor` as a new run in `out` (the source run is only read):
  the source's config, index and history, plus `record` appended to
  meta["ability_updates"], so the new run says how it was made."""
  from irt_jax import checkpoint
  source = checkpoint.Checkpoints(run.workdir, read_only=True)
  _, src_meta, _, _ = source.restore_json(run.step)
  source.close()
  config = run.config.to_dict()
  config["data"]["dir"] = config["data"]["dir"] or os.path.abspath(data_folder)
  meta = checkpoint.run_meta(
      step=run.step, seed=src_meta.get("seed"), history=src_meta.get("history", []),
      best={**(src_meta.get("best") or {}), "step": int(run.step)}, stopped=True,
      layout=src_meta.get("layout"), added_models=src_meta.get("added_models", []),
      ability_updates=list(src_meta.get("ability_updates", [])) + [record])
  index = {**run.index, "model_names": list(predictor.model_names)}
  return checkpoint.save_derived_run(out, run.step, predictor.params, meta=meta, config=config,
                                     index=index)


def update(workdir: str, feedback: str, out: str, *, heldout: str | None = None,
           heldout_fraction: float = 0.2, prior_scale: float = 1.0, add_new: bool = False,
           step="best", embed: Callable[[list[str]], np.ndarray] | None = None,
           read: Callable[[str], list[dict]] = read_feedback) -> dict:
  """`python -m irt_jax update`: refit the judged models' abilities from a
  feedback log, write the new run to `out`, report on held-out feedback.

  Held out: the records of `heldout` (another log), else `heldout_fraction` of
  the log's queries (`split_heldout`), never fitted on. `embed` encodes query
  texts that are not prompts of the run's data (the run's encoder); `read`
  reads a log (the default: a JSON-lines file; the service's stores give theirs).
  """
  from irt_jax import predictors
  from irt_jax.data import resolve
  if os.path.abspath(out) == os.path.abspath(workdir):
    raise FeedbackError("--out must differ from --workdir (the old run is kept as it is)")
  if os.path.exists(os.path.join(out, "checkpoints")):
    raise FeedbackError(f"{out}: already holds a run; choose another --out")
  run = predictors.load(workdir, step)
  if not run.kind.takes_members:              # an ensemble updates its members (members.py)
    ability.irt_view(run.kind)
  records = read(feedback)
  fit, held = (records, read(heldout)) if heldout else split_heldout(
      records, heldout_fraction)
  if not fit:
    raise FeedbackError(f"{feedback}: no feedback to fit on ({len(records)} records, "
                        f"{len(held)} held out)")
  check_models(fit, run.model_names, add_new)         # before any data is read or encoded
  data = resolve.load_for_run(run.config, workdir, require=())   # writes nothing into workdir
  embs = query_embeddings([r["query"] for r in fit + held], data.prompts, data.embeddings, embed)
  notes = None
  if run.kind.takes_members:
    from irt_jax.coldstart import members
    if prior_scale <= 0:
      raise FeedbackError(f"prior_scale must be > 0, got {prior_scale}")
    new, models, notes = members.refit(
        run.predictor, embs[:len(fit)], fit, prior_scale=prior_scale, irt_refit=refit,
        new=check_models(fit, run.model_names, add_new))
  else:
    new, models = refit(run.predictor, embs[:len(fit)], fit, prior_scale=prior_scale,
                        add_new=add_new)
  report = {"workdir": os.path.abspath(workdir), "step": int(run.step),
            "feedback": (re.sub(r"//([^:/@]*):[^@/]*@", r"//\1@", feedback) if "://" in feedback
                         else os.path.abspath(feedback)),          # a URL without its password
            "fitted_records": len(fit),
            "heldout": os.path.abspath(heldout) if heldout else f"{heldout_fraction:g} of queries",
            "prior_scale": prior_scale, "models": models,
            "heldout_report": compare(run.predictor, new, embs[len(fit):], held)}
  if notes:
    report["members"] = notes
  report["out"] = save(run, new, out, resolve.folder(run.config, workdir),
                       {k: report[k] for k in ("feedback", "fitted_records", "prior_scale")} |
                       {"models": sorted(models)})
  return report
