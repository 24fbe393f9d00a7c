"""Benchmark-score prediction on a held-out benchmark: every protocol x query
choice x estimator x label budget k, over several random draws.

Protocols (who is labelled):
* shared: one set of k queries of the new benchmark, labelled for every LLM
  (what a user running a new benchmark on their fleet does);
* per_llm: k queries per LLM, each LLM its own (the earlier protocol).
Query choices: benchmarks.query_choice (anchors only under shared, adaptive
and fluid only under per_llm: an anchor set is one set for all, adaptive picks
are one LLM's own).

Estimators: benchmarks.held_out (every one given the same labelled cells in a
draw).
"""

from __future__ import annotations

import numpy as np
from absl import logging

from irt_jax import numerics
from irt_jax.benchmarks import query_choice
from irt_jax.benchmarks import scores
# The grid's inputs and estimators, named here too: a grid caller needs no second module.
from irt_jax.benchmarks.held_out import (  # noqa: F401
    ESTIMATORS, SCALE_PRIOR_SD, Bench, Priors, bench_from_predictions, estimates, true_scores)

PROTOCOLS = ("shared", "per_llm")
DRAWS = 5


# ----------------------------------------------------------------------------
# Designs: which cells are labelled under each protocol and choice.

def shared_design(bench: Bench, choice: str, k: int, rng, seed: int):
  """(labelled [n, M], weights [n, M], groups [n, M]): one set of k queries for
  every LLM; groups: the design group (stratum, cluster) of each known cell."""
  known = bench.labels >= 0
  pool = np.flatnonzero(known.any(axis=1))
  if choice == "random":
    idx, w, g = query_choice.random_pick(len(pool), k, rng)
  elif choice == "stratified":
    idx, w, g = query_choice.stratified_pick(-numerics.sigmoid(bench.logits[pool]).mean(1), k, rng)
  elif choice == "anchors_items":
    idx, w, g = query_choice.anchor_pick(bench.logits[pool], k, seed)
  elif choice == "anchors_embeddings":
    if bench.embeddings is None:
      raise ValueError("anchors_embeddings needs the queries' embeddings")
    idx, w, g = query_choice.anchor_pick(bench.embeddings[pool], k, seed)
  else:
    raise ValueError(f"unknown shared choice {choice!r}; choose from {query_choice.SHARED_CHOICES}")
  labelled = np.zeros_like(known)
  labelled[pool[idx]] = known[pool[idx]]
  weights = np.zeros(known.shape)
  weights[pool[idx]] = w[:, None]
  groups = np.full(known.shape, -1, np.int64)
  groups[pool] = g[:, None]
  return labelled, weights, np.where(known, groups, -1)


def per_llm_design(bench: Bench, choice: str, k: int, rng, orders=None):
  """(labelled, weights, groups): k queries per LLM among its own known ones;
  LLMs with no more than k known answers get none (they are not scored at this
  k). Each LLM draws from its own child of rng (rng.spawn), so a choice that
  draws more numbers for one LLM does not shift the next LLM's draw: random and
  stratified picks made from the same rng state stay coupled LLM by LLM."""
  known = bench.labels >= 0
  labelled, weights = np.zeros_like(known), np.zeros(known.shape)
  groups = np.full(known.shape, -1, np.int64)
  for m, child in enumerate(rng.spawn(known.shape[1])):
    rows = np.flatnonzero(known[:, m])
    if len(rows) <= k:
      continue
    if choice == "random":
      idx, w, g = query_choice.random_pick(len(rows), k, child)
    elif choice == "stratified":
      idx, w, g = query_choice.stratified_pick(-bench.logits[rows, m], k, child)
    elif choice in ("adaptive", "fluid"):
      idx, w, g = orders[m][:k], np.full(k, 1.0 / k), np.zeros(len(rows), np.int64)
    else:
      raise ValueError(f"unknown per-LLM choice {choice!r}; choose from "
                       f"{query_choice.PER_LLM_CHOICES}")
    labelled[rows[idx], m] = True
    weights[rows[idx], m] = w
    groups[rows, m] = g
  return labelled, weights, groups


def adaptive_orders(bench: Bench, k_max: int, rng, prior_sd: float) -> list:
  """Per LLM the adaptive order (indices into its known rows) after a random first pick."""
  known = bench.labels >= 0
  out = []
  for m in range(known.shape[1]):
    rows = np.flatnonzero(known[:, m])
    if len(rows) < 2:
      out.append(np.zeros(0, np.int64))
      continue
    first = int(rng.integers(len(rows)))
    out.append(scores.adaptive_order(
        bench.logits[rows, m], bench.a_sq[rows], (bench.labels[rows, m] == 1).astype(float),
        min(k_max, len(rows) - 1), prior_sd, start=(first,)))
  return out


# ----------------------------------------------------------------------------
# The grid for one benchmark, and its metrics.

def cells(protocols=PROTOCOLS, choices=None) -> list[tuple[str, str]]:
  """(protocol, choice) pairs to run: `choices` filters each protocol's own list."""
  known = set(query_choice.SHARED_CHOICES) | set(query_choice.PER_LLM_CHOICES)
  unknown = [c for c in (choices or ()) if c not in known]
  if unknown:
    raise ValueError(f"unknown query choice(s) {unknown}; choose from {sorted(known)}")
  out = []
  for protocol in protocols:
    if protocol not in PROTOCOLS:
      raise ValueError(f"unknown label protocol {protocol!r}; choose from {list(PROTOCOLS)}")
    own = query_choice.SHARED_CHOICES if protocol == "shared" else query_choice.PER_LLM_CHOICES
    out += [(protocol, c) for c in own if choices is None or c in choices]
  if not out:
    raise ValueError(f"no query choice of {list(choices or ())} runs under the label "
                     f"protocol(s) {list(protocols)} (anchors: shared only; adaptive, "
                     f"fluid: per_llm only)")
  return out


def benchmark_grid(bench: Bench, ks, draws: int = DRAWS, seed: int = 0,
                   priors: Priors = Priors(), protocols=PROTOCOLS, choices=None) -> dict:
  """{(protocol, choice, k, estimator): [draws, M] estimated accuracies}.

  Every estimator of one draw sees the same labelled cells. An LLM with no more
  than k known answers is NaN at that k (all its answers would be labelled).
  """
  known = bench.labels >= 0
  enough = {k: known.sum(0) > k for k in ks}
  out = {}
  for cell, (protocol, choice) in enumerate(cells(protocols, choices)):
    logging.info("grid: %s labels, %s choice, %d draws x k in %s", protocol, choice, draws,
                 list(ks))
    for d in range(draws):
      rng = np.random.default_rng([seed, d, cell])
      orders = _orders(bench, choice, max(ks), rng, priors)
      for k in ks:
        # the design's generator depends on (draw, k) alone, not on the choice: random
        # and stratified picks of draw d come from the same numbers (query_choice)
        design_rng = np.random.default_rng([seed, d, k, PROTOCOLS.index(protocol)])
        if protocol == "shared":
          pool = int(known.any(axis=1).sum())
          if k >= pool:
            continue
          labelled, weights, groups = shared_design(bench, choice, k, design_rng,
                                                    seed * 1000 + d)
        else:
          labelled, weights, groups = per_llm_design(bench, choice, k, design_rng, orders)
        est = estimates(bench, labelled & enough[k][None, :], weights, priors,
                        shared=protocol == "shared", rng=rng, groups=groups)
        for name, v in est.items():
          out.setdefault((protocol, choice, k, name), np.full((draws, known.shape[1]), np.nan))
          out[(protocol, choice, k, name)][d] = np.where(enough[k], v, np.nan)
  return out


def _orders(bench: Bench, choice: str, k_max: int, rng, priors: Priors):
  """Per LLM its adaptive pick order (adaptive or fluid choices), else None."""
  if choice == "adaptive":
    return adaptive_orders(bench, k_max, rng, priors.per_llm_sd)
  if choice == "fluid":
    known = bench.labels >= 0
    return scores.fluid_orders(bench.logits, (bench.labels == 1).astype(np.float64), known,
                                   k_max, rng, priors.per_llm_sd, priors.shared_sd)
  return None


def grid_metrics(grid: dict, true) -> dict:
  """"protocol/choice/k/estimator" -> per-draw metric dicts over LLMs (None where
  fewer than 2 LLMs are scored); JSON-ready, so a benchmark's grid is cached."""
  return {"/".join(map(str, key)): [scores._metrics_over_llms(row, true) for row in pred]
          for key, pred in grid.items()}


METRICS = ("mae", "bias", "spearman", "kendall")


def summarize(per_benchmark: dict[str, dict]) -> list[dict]:
  """Over benchmarks: each draw's metric averaged over the benchmarks where it is
  defined, then mean, std and the per-draw values over draws; one row per cell."""
  def order(key):
    protocol, choice, k, estimator = key.split("/")
    return protocol, choice, int(k), estimator
  rows = []
  for key in sorted({key for bench in per_benchmark.values() for key in bench}, key=order):
    draws = max(len(b[key]) for b in per_benchmark.values() if key in b)
    protocol, choice, k, estimator = order(key)
    row = {"protocol": protocol, "choice": choice, "k": k, "estimator": estimator,
           "draws": draws}
    for metric in METRICS:
      per_draw = []
      for d in range(draws):
        vals = [b[key][d][metric] for b in per_benchmark.values()
                if key in b and b[key][d] is not None and b[key][d][metric] is not None]
        per_draw.append(float(np.mean(vals)) if vals else None)
      ok = [v for v in per_draw if v is not None]
      row[metric] = {"mean": float(np.mean(ok)) if ok else None,
                     "std": float(np.std(ok, ddof=1)) if len(ok) > 1 else None,
                     "per_draw": per_draw}
    row["n_benchmarks"] = sum(1 for b in per_benchmark.values() if key in b)
    rows.append(row)
  return rows


def records(result: dict) -> list[dict]:
  """A benchmark-prediction result's grid rows (one per protocol, choice, k and
  estimator), each naming the dataset, kind and training protocol: the records
  that tables are made from (grid_tables.benchmark_grid_markdown)."""
  tag = {"dataset": result["dataset"], "kind": result["setup"]["kind"],
         "training": result["setup"]["protocol"]}
  return [{**tag, **row} for row in result.get("grid", [])]
