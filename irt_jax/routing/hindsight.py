"""Max Expert: the per-benchmark best single model, a baseline that reads the
benchmark label.

LLMRouterBench (Li et al. 2026, arXiv 2601.07206) compares every router with
"Max Expert": for each dataset, the single model with the highest accuracy on
that dataset, used for all of that dataset's queries. Here "dataset" is the
benchmark of a query and the accuracy is read on the train split (the test split
would make it an oracle). A router sees only the query text; Max Expert also
needs the query's benchmark label, which a deployed router is not given, so it
is a hindsight reference, not a competitor on equal terms.

Its choices are written as scores (minus each model's rank in its benchmark's
train order), so `rules.choose_by_score` routes by them among the known models
and the paired bootstrap reads them like any run's logits.
"""

from __future__ import annotations

import numpy as np

from irt_jax.data.io import Split
from irt_jax.routing import rules


def benchmark_orders(train: Split, train_benchmark: np.ndarray, n_benchmarks: int) -> np.ndarray:
  """[B, M]: on each benchmark, the models by train accuracy, best first (ties:
  lower index first); a benchmark with no known train cell of a model ranks that
  model last, and one with none at all takes the global train order."""
  global_order = rules.best_single_order(train)
  orders = np.empty((n_benchmarks, train.labels.shape[1]), np.int64)
  train_benchmark = np.asarray(train_benchmark)
  for b in range(n_benchmarks):
    rows = train_benchmark == b
    if not (rows.any() and (train.labels[rows] >= 0).any()):
      orders[b] = global_order
      continue
    orders[b] = rules.best_single_order(Split(train.queries[rows], train.labels[rows]))
  return orders


def scores(orders: np.ndarray, benchmark: np.ndarray) -> np.ndarray:
  """[n, M] scores of Max Expert for queries of the given benchmarks: minus the
  model's rank in its query's benchmark order (the best model scores 0)."""
  n_benchmarks, m = orders.shape
  rank = np.empty_like(orders)
  rank[np.arange(n_benchmarks)[:, None], orders] = np.arange(m)[None, :]
  return -rank[np.asarray(benchmark)].astype(np.float64)


def for_split(train: Split, all_benchmark: np.ndarray, queries: np.ndarray,
              n_benchmarks: int) -> np.ndarray:
  """Max Expert's [n, M] scores for the queries (rows into the query table) of a
  split, its orders read on `train`; `all_benchmark` is the benchmark of every row."""
  all_benchmark = np.asarray(all_benchmark)
  orders = benchmark_orders(train, all_benchmark[train.queries], n_benchmarks)
  return scores(orders, all_benchmark[queries])
