"""What an explanation compares a query with: the run's training queries.

`ItemSource` is a kind's item-response view with its params (the predictor's
own, or the first member of an ensemble that has one); `Reference` holds the
training queries' unit embeddings, benchmarks and answers, and the sorted b and
|a| of the item source over them, for percentiles and nearest neighbours.
`load_reference(workdir, ...)` builds it from the run's training split (read,
never written, through `data.resolve.load_for_run`).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import numpy as np

from irt_jax.predictors import CHUNK, bucket

PROMPT_CHARS = 200       # a neighbour's prompt is shown up to this many characters
# Nearest neighbours: above SEARCH_DIMS dimensions, candidates are found on the reference's
# first SEARCH_DIMS principal axes (an eighth of the bytes of 768-d rows to read per query),
# and the best CANDIDATES of them are ranked by their exact cosine.
SEARCH_DIMS = 96
CANDIDATES = 256


@functools.lru_cache(maxsize=16)
def _jitted_items(kind, spec):
  return jax.jit(lambda params, v: kind.irt.items(params, v, spec))


def run_padded(fn, params, embeddings: np.ndarray) -> tuple[np.ndarray, ...]:
  """`fn(params, rows) -> tuple of [rows, ...] arrays` over `embeddings` in chunks of
  `predictors.CHUNK`, each padded to its bucket as `Predictor.logits` does (few compiled
  shapes), as float64 numpy arrays."""
  parts = []
  for start in range(0, len(embeddings), CHUNK):
    part = np.asarray(embeddings[start:start + CHUNK], np.float32)
    rows = part.shape[0]
    size = bucket(rows)
    if size > rows:
      part = np.concatenate([part, np.zeros((size - rows, part.shape[1]), np.float32)])
    parts.append([np.asarray(x, np.float64)[:rows] for x in fn(params, part)])
  return tuple(np.concatenate(xs) for xs in zip(*parts))


@dataclasses.dataclass(frozen=True)
class ItemSource:
  """A kind with an IRT view, its spec and params; `member`: its index in an ensemble
  (None: the predictor itself); `label` names it for a reader."""
  kind: object
  spec: object
  params: dict
  label: str
  member: int | None = None

  def theta(self) -> np.ndarray:
    """Abilities [M, d] (float64)."""
    return np.asarray(self.kind.irt.abilities(self.params), np.float64)

  @functools.cached_property
  def device_params(self):
    return jax.device_put(self.params)

  def items(self, embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(a [N, d], b [N]) in float64, with logit = a . theta - b."""
    if len(embeddings) == 0:
      return np.zeros((0, 0)), np.zeros(0)
    return run_padded(_jitted_items(self.kind, self.spec), self.device_params, embeddings)


def item_source(predictor) -> ItemSource | None:
  """The predictor's own IRT view, else its first ensemble member's, else None."""
  kind = getattr(predictor, "kind", None)
  if kind is None:
    return None
  if kind.irt is not None:
    return ItemSource(kind, predictor.spec, predictor.params, kind.name)
  if kind.takes_members:
    from irt_jax.models import ensemble
    for k, (member, spec) in enumerate(ensemble.member_kinds(predictor.spec)):
      if member.irt is not None:
        return ItemSource(member, spec, predictor.params["members"][f"m{k}"],
                          f"member m{k} ({member.name})", member=k)
  return None


@dataclasses.dataclass(frozen=True)
class Reference:
  """Training queries: unit embeddings [n, D], ids, benchmark index [n] and names,
  answers [n, M] in the Router's model order (1 right, 0 wrong, -1 unknown), prompts
  (or None); b and |a| of the item source over them, sorted (or None)."""
  unit: np.ndarray
  query_ids: tuple
  benchmark: np.ndarray
  benchmark_names: tuple
  labels: np.ndarray
  prompts: tuple | None
  b_sorted: np.ndarray | None
  a_norm_sorted: np.ndarray | None
  axes: np.ndarray | None = None        # [D, SEARCH_DIMS] principal axes, or None: exact
  projected: np.ndarray | None = None   # [n, SEARCH_DIMS]: unit @ axes

  def nearest(self, embedding: np.ndarray, k: int) -> list[tuple[int, float]]:
    """The k training queries of highest cosine similarity to `embedding`, best first
    (ties: lower row first). Exact over every row up to SEARCH_DIMS dimensions; above,
    over the CANDIDATES rows nearest on the principal axes."""
    k = max(0, min(int(k), len(self.unit)))
    if k == 0:
      return []
    q = np.asarray(embedding, np.float32)
    q = q / max(float(np.linalg.norm(q)), 1e-12)
    rows = np.arange(len(self.unit))
    if self.axes is not None and len(rows) > max(CANDIDATES, 4 * k):
      approx = self.projected @ (q @ self.axes)
      rows = np.sort(np.argpartition(-approx, max(CANDIDATES, 4 * k) - 1)[:max(CANDIDATES, 4 * k)])
    sim = self.unit[rows] @ q if len(rows) < len(self.unit) else self.unit @ q
    top = np.argpartition(-sim, k - 1)[:k] if k < len(sim) else np.arange(len(sim))
    top = top[np.lexsort((rows[top], -sim[top]))]
    return [(int(rows[i]), float(sim[i])) for i in top]

  def describe(self, row: int, similarity: float, model_names) -> dict:
    answers = self.labels[row]
    prompt = None if self.prompts is None else self.prompts[row][:PROMPT_CHARS]
    return {"query_id": self.query_ids[row],
            "benchmark": self.benchmark_names[int(self.benchmark[row])],
            "similarity": similarity, "prompt": prompt,
            "correct": [m for m, y in zip(model_names, answers) if y == 1],
            "wrong": [m for m, y in zip(model_names, answers) if y == 0]}

  def strengths(self) -> list[dict | None]:
    """Per LLM, the benchmark where its training accuracy leads the mean LLM's by
    most: {benchmark, accuracy, lead}; None for an LLM with no known answer."""
    known, right = self.labels >= 0, self.labels == 1
    acc = np.full((len(self.benchmark_names), self.labels.shape[1]), np.nan)
    for b in range(len(self.benchmark_names)):
      rows = self.benchmark == b
      counts = known[rows].sum(0)
      with np.errstate(invalid="ignore", divide="ignore"):
        acc[b] = np.where(counts > 0, right[rows].sum(0) / counts, np.nan)
    with np.errstate(invalid="ignore"):
      lead = acc - np.nanmean(np.where(np.isfinite(acc), acc, np.nan), axis=1, keepdims=True)
    out = []
    for m in range(acc.shape[1]):
      if not np.isfinite(lead[:, m]).any():
        out.append(None)
        continue
      b = int(np.nanargmax(lead[:, m]))
      out.append({"benchmark": self.benchmark_names[b], "accuracy": float(acc[b, m]),
                  "lead": float(lead[b, m])})
    return out


def build_reference(embeddings, query_ids, benchmark, benchmark_names, labels, prompts,
                    source: ItemSource | None) -> Reference:
  """A Reference from arrays (labels already in the Router's model order)."""
  emb = np.asarray(embeddings, np.float32)
  norms = np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
  b_sorted = a_sorted = None
  if source is not None and len(emb):
    a, b = source.items(emb)
    b_sorted, a_sorted = np.sort(b), np.sort(np.linalg.norm(a, axis=1))
  unit = emb / norms
  axes = _principal_axes(unit) if unit.shape[1] > SEARCH_DIMS else None
  return Reference(unit=unit, query_ids=tuple(query_ids),
                   benchmark=np.asarray(benchmark, np.int64),
                   benchmark_names=tuple(benchmark_names), labels=np.asarray(labels, np.int8),
                   prompts=None if prompts is None else tuple(prompts),
                   b_sorted=b_sorted, a_norm_sorted=a_sorted, axes=axes,
                   projected=None if axes is None else np.ascontiguousarray(unit @ axes))


def _principal_axes(unit: np.ndarray, sample: int = 8192) -> np.ndarray:
  """The first SEARCH_DIMS principal axes (uncentred: cosine search) of up to `sample`
  rows (seeded), [D, SEARCH_DIMS] float32."""
  rows = unit
  if len(unit) > sample:
    rows = unit[np.sort(np.random.default_rng(0).choice(len(unit), sample, replace=False))]
  _, _, vt = np.linalg.svd(np.asarray(rows, np.float64), full_matrices=False)
  return np.ascontiguousarray(vt[:SEARCH_DIMS].T, np.float32)


def load_reference(workdir: str, model_names, source: ItemSource | None) -> Reference:
  """The training split of the run in `workdir` (a DataError or CheckpointError
  when it cannot be read). LLMs the data does not have (added later by cold
  start) have no known answers."""
  import ml_collections
  from irt_jax import checkpoint
  from irt_jax.data import resolve
  _, _, config, _ = checkpoint.Checkpoints(workdir, read_only=True).restore_json()
  data = resolve.load_for_run(ml_collections.ConfigDict(config), workdir, require=("train",))
  train = data.split("train")
  labels = np.full((len(train.queries), len(model_names)), -1, np.int8)
  column = {name: j for j, name in enumerate(data.model_names)}
  for m, name in enumerate(model_names):
    if name in column:
      labels[:, m] = train.labels[:, column[name]]
  rows = np.asarray(train.queries)
  prompts = None if data.prompts is None else [data.prompts[i] for i in rows]
  return build_reference(data.embeddings[rows], [data.query_ids[i] for i in rows],
                         data.benchmark[rows], data.benchmark_names, labels, prompts, source)
