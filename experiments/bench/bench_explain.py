"""What an explanation costs beyond the route itself, from embeddings (prints figures; not a test).

For --queries single queries of a data folder's test split (one call per query, as the
service makes per request; their embeddings given, so the encoder is left out), times
alternately
  route:   predictor.logits + Router.route_logits
  explain: Router.explain_embeddings (its own logits and the query's item parameters from
           one pass of the query network; P, cost, the rule's score, the choice; b, |a| and
           their percentiles; the nearest training queries; a . theta)
and prints the median, p90 and minimum of each and of their difference.

    PYTHONPATH=. .venv/bin/python -m experiments.bench.bench_explain --workdir=runs/irtnet
    PYTHONPATH=. .venv/bin/python -m experiments.bench.bench_explain --data_dir=../shared/data/routerdc \
        --config=configs/irtnet.py

    PYTHONPATH=. .venv/bin/python -m experiments.bench.bench_explain --data_dir=../shared/data/llmrouter \
        --check_neighbours=1000

With --workdir, the trained run and its own training queries. Without it, the kind of
--config at its configured size with freshly initialised params (timings depend on the
shapes, not on the values) on --data_dir, whose training split is the reference.
--check_neighbours=N compares the neighbour search (on the reference's principal axes)
with the exact search instead.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]

from irt_jax.routing.router import Router  # noqa: E402


def untrained(config_path: str, data_dir: str):
  """(Router, test embeddings): the config's kind, initialised, on the data's shape, with
  the data's training split as the explanation's reference."""
  import jax
  from irt_jax import models
  from irt_jax.data import cache
  from irt_jax.predictors import Predictor
  from irt_jax.routing import reference
  spec_ = importlib.util.spec_from_file_location("bench_config", config_path)
  module = importlib.util.module_from_spec(spec_)
  spec_.loader.exec_module(module)
  config = module.get_config()
  data = cache.load_and_cache(data_dir, None, benchmarks=config.data.benchmarks,
                              embeddings_file=config.data.embeddings_file)
  kind = models.for_config(config)
  if kind.init is None:
    sys.exit(f"bench_explain: kind {kind.name!r} is fitted, not initialised; pass --workdir")
  spec = kind.spec(config.model, data.n_models, data.embed_dim)
  params = jax.tree.map(np.asarray, kind.init(jax.random.PRNGKey(0), spec))
  predictor = Predictor(kind=kind, spec=spec, params=params, model_names=data.model_names)
  train = data.split("train")
  rows = np.asarray(train.queries)
  ref = reference.build_reference(
      data.embeddings[rows], [data.query_ids[i] for i in rows], data.benchmark[rows],
      data.benchmark_names, train.labels, None, reference.item_source(predictor))
  router = Router(predictor, encoder=None).with_reference(ref)
  return router, data.embeddings[data.split("test").queries]


def trained(workdir: str):
  from irt_jax import predictors
  from irt_jax.data import resolve
  run = predictors.load(workdir)
  data = resolve.load_for_run(run.config, workdir, require=("train", "test"))
  return Router(run.predictor, encoder=None, workdir=workdir), \
      data.embeddings[data.split("test").queries]


def check_neighbours(data_dir: str, n: int, k: int) -> None:
  """The search on principal axes against the exact search, for the first n test queries
  of `data_dir` (its training split the reference): the share of the exact k neighbours
  found, and of queries whose k neighbours come back identical, in the same order."""
  from irt_jax.data import cache
  from irt_jax.routing import reference
  data = cache.load_and_cache(data_dir, None)
  rows = np.asarray(data.split("train").queries)
  ref = reference.build_reference(data.embeddings[rows], [str(i) for i in rows],
                                  data.benchmark[rows], data.benchmark_names,
                                  np.zeros((len(rows), 1), np.int8), None, None)
  exact = dataclasses.replace(ref, axes=None, projected=None)
  found = identical = 0
  test = np.asarray(data.split("test").queries)[:n]
  for i in test:
    got = [r for r, _ in ref.nearest(data.embeddings[i], k)]
    want = [r for r, _ in exact.nearest(data.embeddings[i], k)]
    found += len(set(got) & set(want))
    identical += got == want
  print(f"{Path(data_dir).name}: {len(rows)} reference queries, {len(test)} test queries: "
        f"{100 * found / (k * len(test)):.1f}% of the exact {k} neighbours found, "
        f"{100 * identical / len(test):.1f}% of the lists identical")


def stats(ms: np.ndarray) -> str:
  return (f"median {np.median(ms):7.3f} ms   p90 {np.percentile(ms, 90):7.3f} ms   "
          f"min {ms.min():7.3f} ms")


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workdir", help="a trained run (its training split is the reference)")
  parser.add_argument("--data_dir", default=str(REPO.parent / "shared" / "data" / "routerdc"))
  parser.add_argument("--config", default=str(REPO / "configs" / "irtnet.py"))
  parser.add_argument("--queries", type=int, default=200)
  parser.add_argument("--neighbours", type=int, default=5)
  parser.add_argument("--check_neighbours", type=int, default=0,
                      help="instead of timing, compare the neighbour search with the exact one "
                           "on this many test queries of --data_dir")
  args = parser.parse_args()
  if args.check_neighbours:
    check_neighbours(args.data_dir, args.check_neighbours, args.neighbours)
    return
  router, emb = trained(args.workdir) if args.workdir else untrained(args.config, args.data_dir)
  explainer = router.explainer()
  n_ref = 0 if explainer.reference is None else len(explainer.reference.query_ids)
  emb = np.asarray(emb[:args.queries], np.float32)
  texts = ["q"]

  def route(i):
    logits = router.predictor.logits(emb[i:i + 1])
    router.route_logits(logits)

  def explain(i):
    router.explain_embeddings(texts, emb[i:i + 1], neighbours=args.neighbours)

  for i in range(min(5, len(emb))):      # compile and warm both paths
    route(i), explain(i)
  times = {"route": [], "explain": []}
  for i in range(len(emb)):
    for name, fn in (("route", route), ("explain", explain)):
      start = time.perf_counter()
      fn(i)
      times[name].append(1e3 * (time.perf_counter() - start))
  r, e = np.array(times["route"]), np.array(times["explain"])
  print(f"kind {router.predictor.kind.name}, {len(router.model_names)} LLMs, "
        f"{emb.shape[1]}-d embeddings, {n_ref} reference queries, {len(emb)} single-query calls")
  print(f"route    {stats(r)}")
  print(f"explain  {stats(e)}")
  print(f"explain - route (per query)  {stats(e - r)}")


if __name__ == "__main__":
  main()
