"""Route raw text: query -> the run's encoder -> the run's predictor -> a model.

    from irt_jax.routing.router import Router
    router = Router.from_checkpoint("runs/routerdc", encoder_dir=".models/all-mpnet-base-v2")
    router.route(["What is 17 * 23?"])[0].model

A Router holds a predictor (any model kind, `predictors.load`) and the query
encoder the run was trained with, loaded lazily and once. Choices are made on
logits when cost plays no part, so saturated probabilities (float32 rounds
P > 1 - 6e-8 to 1.0) never tie; with costs the objective is, by `rule`,
P(correct) - cost_weight * cost (`linear`, the default) or Avengers-Pro's
alpha * normalised P + (1 - alpha) * (1 - cost / max cost) over the allowed
models (`balance`, with `alpha` in [0, 1]), ties broken by logit.

Costs are per query and model, in whatever unit the caller uses (dollars, tokens):
a vector [M] (one price per model), a matrix [N, M] (one per query routed, in
the order given) or a callable texts -> [N, M]. `budget` caps the mean cost over
the queries of one call. The choice rules themselves live in `routing`
(`choose_with_cost`, `choose_under_budget`), shared with evaluation.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from irt_jax.errors import UserError
from irt_jax.routing import costs as costs_lib
from irt_jax.routing import rules
from irt_jax.numerics import non_negative, sigmoid


class RouterError(UserError, ValueError):
  """The Router cannot do what was asked (missing encoder, bad costs, unknown model)."""


# The encoder precisions route.py and serve.py offer (checked here, in `load`, for both):
# bfloat16 passes the embedding-cosine bar; int8 misses it (docs/encoder.md, "Reduced
# precision"), so it stays in `networks` for measurement only.
ENCODER_PRECISIONS = ("float32", "bfloat16")


@dataclasses.dataclass(frozen=True)
class Route:
  """One query's routing: the chosen model and the best alternative."""
  model: str
  p_correct: float
  logit: float
  expected_cost: float | None          # None when the Router has no costs
  runner_up: str | None                # None when only one model was allowed
  runner_up_p: float | None

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)


class Router:
  """Text -> P(correct) for each model -> a routing choice.

  `predictor`: anything with `.logits(embeddings [N, D]) -> [N, M]`,
  `.model_names` and `.input_dim` (a `predictors.Predictor`). `encoder`: anything
  with `.encode(texts) -> [N, D]` (a `SentenceEncoder`), or a zero-argument
  callable returning one, called once on first use.
  """

  def __init__(self, predictor, encoder, costs=None, name: str | None = None,
               workdir: str | None = None):
    self.predictor = predictor
    self.model_names: tuple[str, ...] = tuple(predictor.model_names)
    kind = getattr(predictor, "kind", None)
    self.name = name or getattr(kind, "name", None) or "custom"
    self.workdir = workdir
    self._encoder = None if callable(encoder) and not hasattr(encoder, "encode") else encoder
    self._load_encoder = encoder if self._encoder is None else None
    self._lock = threading.Lock()
    self.costs = self._check_costs(costs)
    # What the encoder is (folder, weights, max length), so a reload of another
    # checkpoint trained with the same encoder can share the one already loaded.
    self.encoder_key: tuple | None = None
    self._explainer = None
    self._explain_lock = threading.Lock()

  # ---------------------------------------------------------------- building
  @classmethod
  def from_predictor(cls, predictor, encoder, costs=None, name: str | None = None) -> "Router":
    return cls(predictor, encoder, costs=costs, name=name)

  @classmethod
  def from_checkpoint(cls, workdir: str, encoder_dir: str | None = None, step="best",
                      costs=None, encoder_precision: str = "float32") -> "Router":
    """The run in `workdir` and its query encoder (its layers' matmuls at
    `encoder_precision`, one of `networks.PRECISIONS`; docs/encoder.md has the check of
    bfloat16 against float32).

    The encoder folder is `encoder_dir`, else the one the run recorded. When the
    run recorded a fingerprint of its encoder's weights, a folder with other
    weights is refused (its embeddings would mean nothing to the model).
    """
    from irt_jax import predictors
    run = predictors.load(workdir, step)
    record = dict(run.encoder or {})
    name = record.get("name") or "unknown"
    folder = encoder_dir or record.get("model_dir")
    if not folder or not os.path.isdir(folder):
      where = (f"encoder folder {folder} does not exist" if folder else
               "the run recorded no encoder folder")
      raise RouterError(f"{workdir}: this run needs its query encoder {name!r} to route text, "
                        f"but {where}; pass encoder_dir=<a folder holding {name}> "
                        f"(--encoder_dir on the command line)")
    if record.get("fingerprint"):
      from irt_jax.data import resolve
      found = resolve.weights_fingerprint(folder)
      if found != record["fingerprint"]:
        raise RouterError(f"{folder}: its weights differ from those of the encoder {name!r} this "
                          f"run was trained with (fingerprint {found[:12]} != "
                          f"{record['fingerprint'][:12]}); pass the folder the run used")
    max_length = record.get("max_length") or None
    input_dim = run.predictor.input_dim

    def load():
      from irt_jax.encoder import load_encoder
      encoder = load_encoder(folder, max_length=max_length, precision=encoder_precision)
      if encoder.dim != input_dim:
        raise RouterError(f"{folder}: encoder {encoder.name!r} makes {encoder.dim}-d embeddings "
                          f"but this run reads {input_dim}-d ones (it was trained with {name!r})")
      return encoder

    router = cls(run.predictor, load, costs=costs, name=run.kind.name, workdir=workdir)
    router.encoder_key = (os.path.realpath(folder), record.get("fingerprint"), max_length,
                          encoder_precision)
    return router

  def with_costs(self, costs) -> "Router":
    """This Router (same predictor, same encoder, loaded once) with other costs:
    [M], [N, M], a mapping model name -> cost, a `costs.Costs`, a callable
    texts -> [N, M] (e.g. `costs.for_routing(path, router.model_names)`) or None."""
    other = copy.copy(self)
    other.costs = self._check_costs(costs)
    return other

  @property
  def encoder(self):
    """The query encoder, loaded on first use (once, also under threads)."""
    if self._encoder is None:
      with self._lock:
        if self._encoder is None:
          self._encoder = self._load_encoder()
    return self._encoder

  # ---------------------------------------------------------------- costs
  def _check_costs(self, costs, n: int | None = None) -> Any:
    """Costs as float64 [M] or [N, M] (`costs.check_costs`, the one check);
    callables are checked when called."""
    if costs is None or (callable(costs) and not isinstance(costs, costs_lib.Costs)):
      return costs
    try:
      return costs_lib.check_costs(costs, self.model_names, n)
    except costs_lib.DataError as e:
      raise RouterError(str(e)) from None

  def cost_matrix(self, texts: Sequence[str] | None, n: int, costs=None) -> np.ndarray | None:
    """Costs [n, M] for this call (`costs` overrides the Router's), or None."""
    costs = self.costs if costs is None else costs
    if costs is None:
      return None
    if callable(costs):
      if texts is None:
        raise RouterError("the Router's costs are a function of the texts; route texts, "
                          "not embeddings or logits")
      costs = costs(list(texts))
    arr = self._check_costs(costs, n)
    return np.broadcast_to(arr, (n, len(self.model_names)))

  def allowed(self, candidates: Sequence[str] | None) -> np.ndarray:
    """Mask [M] of the models routing may choose."""
    if candidates is None:
      return np.ones(len(self.model_names), bool)
    if isinstance(candidates, str):
      candidates = [candidates]
    unknown = [c for c in candidates if c not in self.model_names]
    if unknown:
      raise RouterError(f"unknown candidate model(s) {unknown}; this router knows: "
                        f"{', '.join(self.model_names)}")
    if not candidates:
      raise RouterError("candidates is empty: name at least one model")
    chosen = set(candidates)
    return np.fromiter((m in chosen for m in self.model_names), bool, len(self.model_names))

  # ---------------------------------------------------------------- predicting
  def embed(self, texts: Sequence[str]) -> np.ndarray:
    if isinstance(texts, str):
      raise TypeError("give a list of texts, not a single string")
    texts = list(texts)
    if not all(isinstance(t, str) for t in texts):
      raise TypeError("texts must be strings")
    if not texts:
      return np.zeros((0, self.predictor.input_dim), np.float32)
    return np.asarray(self.encoder.encode(texts), np.float32)

  def logits(self, texts: Sequence[str]) -> np.ndarray:
    """Logits of P(correct) [queries, models]."""
    emb = self.embed(texts)
    if emb.shape[0] == 0:
      return np.zeros((0, len(self.model_names)), np.float32)
    return np.asarray(self.predictor.logits(emb))

  def predict(self, texts: Sequence[str]) -> np.ndarray:
    """P(correct) [queries, models] (float64)."""
    return sigmoid(self.logits(texts))

  def route(self, texts: Sequence[str], cost_weight: float = 0.0, budget: float | None = None,
            candidates: Sequence[str] | None = None, costs=None, *, rule: str = "linear",
            alpha: float | None = None) -> list[Route]:
    """Per query the chosen model, its P(correct), expected cost and runner-up.

    cost_weight == 0 and no budget: the model with the highest logit.
    cost_weight > 0: argmax P - cost_weight * cost. budget: the routing with the
    highest summed P whose mean cost over these queries is <= budget
    (`rules.choose_under_budget`); the runner-up is then the argmax of P among the rest.
    rule="balance" with alpha in [0, 1] (no cost_weight, no budget): argmax of
    Avengers-Pro's score over the allowed models (`rules.rule_score`).
    """
    self.allowed(candidates)          # a bad name or rule fails before any encoding
    _rule(rule, alpha, cost_weight, budget)
    return self.route_logits(self.logits(texts), cost_weight, budget, candidates, costs,
                             texts=texts, rule=rule, alpha=alpha)

  def explain(self, texts: Sequence[str], cost_weight: float = 0.0,
              candidates: Sequence[str] | None = None, costs=None,
              neighbours: int = 5, *, rule: str = "linear",
              alpha: float | None = None) -> list[dict]:
    """Why each query goes where `route` sends it (`routing.explain`): per model
    P(correct), cost and the rule's score, the choice, runner-up and margin, and
    (by kind) the query's item parameters against the training queries, its
    nearest training queries, an ensemble's members. A JSON-ready dict per query."""
    self.allowed(candidates)
    _rule(rule, alpha, cost_weight)
    return self.explain_embeddings(texts, self.embed(texts), cost_weight, candidates, costs,
                                   neighbours, rule=rule, alpha=alpha)

  def explain_embeddings(self, texts: Sequence[str], embeddings: np.ndarray,
                         cost_weight: float = 0.0, candidates: Sequence[str] | None = None,
                         costs=None, neighbours: int = 5, *, rule: str = "linear",
                         alpha: float | None = None) -> list[dict]:
    """`explain` for the texts' embeddings already computed (the service)."""
    cost_weight = _non_negative(cost_weight, "cost_weight")
    alpha = _rule(rule, alpha, cost_weight)
    return self.explainer().explain(self, list(texts), embeddings, cost_weight, candidates,
                                    costs, neighbours, rule=rule, alpha=alpha)

  def with_reference(self, reference) -> "Router":
    """This Router explaining against `reference` (a `routing.reference.Reference`, e.g.
    from `build_reference` on queries of your own) instead of its run's training split."""
    from irt_jax.routing import explain
    other = copy.copy(self)
    other._explainer = explain.Explainer(self.predictor, reference)
    other._explain_lock = threading.Lock()
    return other

  def explainer(self):
    """The `explain.Explainer` of this Router, built once: it reads the run's
    training split (when the Router has a workdir) and scores it."""
    if self._explainer is None:
      with self._explain_lock:
        if self._explainer is None:
          from irt_jax.routing import explain
          self._explainer = explain.make_explainer(self.predictor, self.workdir)
    return self._explainer

  def route_logits(self, logits: np.ndarray, cost_weight: float = 0.0,
                   budget: float | None = None, candidates: Sequence[str] | None = None,
                   costs=None, texts: Sequence[str] | None = None, *, rule: str = "linear",
                   alpha: float | None = None) -> list[Route]:
    """`route` for logits already computed ([N, M], e.g. by a batched service)."""
    logits = np.asarray(logits, np.float64)
    n = logits.shape[0]
    cost_weight = _non_negative(cost_weight, "cost_weight")
    alpha = _rule(rule, alpha, cost_weight, budget)
    allowed = np.broadcast_to(self.allowed(candidates), logits.shape)
    cost = self.cost_matrix(texts, n, costs)
    if cost is None and (cost_weight > 0 or budget is not None or rule == "balance"):
      raise RouterError("cost_weight > 0, budget and rule 'balance' need costs per model; give "
                        "the Router costs= (a vector [models], a matrix [queries, models] or a "
                        "mapping model name -> cost)")
    if budget is not None:
      budget = _non_negative(budget, "budget")
      try:
        first = rules.choose_under_budget(logits, cost, budget, allowed)
      except ValueError as e:
        raise RouterError(str(e)) from None
      rest = allowed.copy()
      rest[np.arange(n), first] = False
      second, _ = rules.best_two(logits, logits, rest)
    else:
      first, second = rules.choose_with_cost(logits, cost, cost_weight, allowed,
                                             runner_up=True, rule=rule, alpha=alpha)
    p = sigmoid(logits)
    out = []
    for q in range(n):
      i, j = int(first[q]), int(second[q])
      out.append(Route(
          model=self.model_names[i], p_correct=float(p[q, i]), logit=float(logits[q, i]),
          expected_cost=None if cost is None else float(cost[q, i]),
          runner_up=self.model_names[j] if j >= 0 else None,
          runner_up_p=float(p[q, j]) if j >= 0 else None))
    return out

  def rank_logits(self, logits: np.ndarray, cost_weight: float = 0.0,
                  candidates: Sequence[str] | None = None, k: int | None = None,
                  texts: Sequence[str] | None = None, *, rule: str = "linear",
                  alpha: float | None = None) -> list[list[str]]:
    """Per query, up to `k` allowed models best first by the same rule as
    `route_logits` (its score, ties by logit): the order in which the service
    falls back when a model's upstream fails. The score is computed once over the
    allowed models (for rule balance, normalised over them all), so the first two
    are `route_logits`' choice and runner-up."""
    logits = np.asarray(logits, np.float64)
    n, m = logits.shape
    cost_weight = _non_negative(cost_weight, "cost_weight")
    alpha = _rule(rule, alpha, cost_weight)
    allowed = np.broadcast_to(self.allowed(candidates), (n, m))
    priced = cost_weight > 0 or rule == "balance"
    cost = self.cost_matrix(texts, n) if priced else None
    if priced and cost is None:
      raise RouterError(f"{'cost_weight > 0' if cost_weight > 0 else 'rule balance'} needs costs "
                        "per model; give the Router costs=")
    score = rules.rule_score(logits, cost, cost_weight, rule=rule, alpha=alpha, allowed=allowed)
    names = self.model_names
    return [[names[j] for j in row]
            for row in rules.ranked(score, logits, allowed, m if k is None else min(k, m))]


def _non_negative(value, what: str) -> float:
  try:
    return non_negative(value, what)
  except ValueError as e:
    raise RouterError(str(e)) from None


def _rule(rule: str, alpha, cost_weight: float = 0.0, budget=None) -> float | None:
  try:
    return rules.check_rule(rule, alpha, cost_weight, budget)
  except ValueError as e:
    raise RouterError(str(e)) from None


def parse_step(step) -> str | int:
  """'best', 'latest' or a step number (an int or its text)."""
  if step in ("best", "latest") or (isinstance(step, int) and not isinstance(step, bool)):
    return step
  if isinstance(step, str) and step.isdigit():
    return int(step)
  raise RouterError(f"step must be 'best', 'latest' or a step number, got {step!r}")


def load(workdir: str, encoder_dir: str | None = None, step="best", costs: str | None = None,
         *, reuse: Router | None = None, encoder_precision: str = "float32") -> Router:
  """The Router of a trained run with the costs of a file: the one loader behind
  `irt-jax route`, `irt-jax serve` and the service's reload. `encoder_precision`: one
  of `ENCODER_PRECISIONS` (the one check of the command-line tools' flag).

  `costs`: a JSON file model name -> cost or a model_prices.csv
  (`costs.for_routing`; tokens counted by `costs.default_tokenizer()`).
  `reuse`: a Router already serving; when the new run was trained with the same
  encoder (same folder, weights, max length and precision) the loaded encoder is shared,
  so a reload costs the checkpoint, not a second encoder.
  """
  if encoder_precision not in ENCODER_PRECISIONS:
    raise RouterError(f"encoder_precision must be one of {', '.join(ENCODER_PRECISIONS)}, got "
                      f"{encoder_precision!r}")
  router = Router.from_checkpoint(workdir, encoder_dir, parse_step(step),
                                  encoder_precision=encoder_precision)
  if (reuse is not None and reuse.encoder_key is not None
      and reuse.encoder_key == router.encoder_key and reuse._encoder is not None):
    router._encoder = reuse._encoder
  if costs:
    router = router.with_costs(costs_lib.for_routing(
        costs, router.model_names, tokenizer_dir=costs_lib.default_tokenizer()))
  return router
