"""What the item-response parameters mean: difficulty against accuracy, a map of
the abilities, nearest neighbours and expert usage of the gate.

Only kinds with an IRT view (models.base.IrtView) have these parameters; for
the others the evaluator reports why it was skipped.
"""

from __future__ import annotations

import os

import numpy as np

from irt_jax import metrics
from irt_jax.models import base

N_NEIGHBOURS = 3
CHUNK = 2048


def per_query_accuracy(labels: np.ndarray) -> np.ndarray:
  """Fraction of LLMs correct on each query, over the known answers (NaN if none)."""
  known = labels >= 0
  with np.errstate(invalid="ignore", divide="ignore"):
    return np.where(known, labels == 1, 0).sum(1) / known.sum(1)


def benchmark_accuracy(labels: np.ndarray, benchmark: np.ndarray, b: int) -> float:
  """Mean over LLMs of each LLM's accuracy on benchmark b (its known answers)."""
  part = labels[benchmark == b]
  known = part >= 0
  per_llm = [(part[known[:, m], m] == 1).mean() for m in range(part.shape[1]) if known[:, m].any()]
  return float(np.mean(per_llm)) if per_llm else float("nan")


def correlations(x, y) -> dict:
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  ok = np.isfinite(x) & np.isfinite(y)
  return {"pearson": metrics.pearson(x[ok], y[ok]), "spearman": metrics.spearman(x[ok], y[ok]),
          "n": int(ok.sum())}


def nearest_neighbours(theta: np.ndarray, names, k: int = N_NEIGHBOURS) -> dict:
  """Each model's k most similar others by cosine similarity of centred abilities."""
  x = np.asarray(theta, np.float64)
  x = x - x.mean(axis=0)
  x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
  sim = x @ x.T
  np.fill_diagonal(sim, -np.inf)
  out = {}
  for i, name in enumerate(names):
    order = np.argsort(-sim[i], kind="stable")[:min(k, len(names) - 1)]
    out[name] = [{"model": names[j], "cosine": float(sim[i, j])} for j in order]
  return out


def entropy(p, axis=-1) -> np.ndarray:
  p = np.asarray(p, np.float64)
  return -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0), axis=axis)


def gate_usage(weights: np.ndarray, benchmark: np.ndarray, names) -> dict:
  """Expert usage: mean gate weight per expert (overall and per benchmark), the mean
  per-query gate entropy (nats; log E = uniform), and per expert the entropy of how
  its total weight spreads over benchmarks (low = a specialist)."""
  w = np.asarray(weights, np.float64)
  n_experts = w.shape[1]
  per_bench, mass = {}, []
  for b in np.unique(benchmark):
    wb = w[benchmark == b]
    per_bench[names[b]] = {"mean_weight": wb.mean(0).tolist(),
                           "mean_entropy": float(entropy(wb).mean()), "n_queries": len(wb)}
    mass.append(wb.mean(0))
  mass = np.asarray(mass)  # [benchmarks, E]: usage of each expert by each benchmark
  spread = mass / np.maximum(mass.sum(0, keepdims=True), 1e-12)
  return {"n_experts": n_experts, "max_entropy": float(np.log(n_experts)),
          "mean_weight": w.mean(0).tolist(), "mean_entropy": float(entropy(w).mean()),
          "expert_benchmark_entropy": entropy(spread, axis=0).tolist(),
          "per_benchmark": per_bench}


def _items(kind, params, spec, embeddings):
  a, b, d = [], [], []
  for s in range(0, len(embeddings), CHUNK):
    chunk = np.asarray(embeddings[s:s + CHUNK], np.float32)
    ai, bi = kind.irt.items(params, chunk, spec)
    _, di = base.identified_items(kind, params, chunk, spec)
    a.append(np.asarray(ai)), b.append(np.asarray(bi)), d.append(np.asarray(di))
  return np.concatenate(a), np.concatenate(b), np.concatenate(d)


class InterpretabilityEvaluator:
  """Difficulty vs accuracy (per benchmark and per query), ability map and
  neighbours, expert usage; on the evaluated split."""
  name = "interpretability"

  def run(self, ctx) -> dict:
    predictor = ctx.run.predictor
    kind = predictor.kind
    if kind.irt is None:
      return {"skipped": f"kind {kind.name!r} has no item-response view (abilities, "
                         f"difficulties)"}
    queries = ctx.data.split(ctx.split).queries
    emb = ctx.data.embeddings[queries]
    labels, bench = ctx.predictions.labels, ctx.predictions.benchmark
    names = ctx.predictions.benchmark_names
    _, b_raw, b_id = _items(kind, predictor.params, predictor.spec, emb)
    q_acc = per_query_accuracy(labels)
    present = [int(b) for b in np.unique(bench)]
    b_acc = np.array([benchmark_accuracy(labels, bench, b) for b in present])
    mean_raw = np.array([b_raw[bench == b].mean() for b in present])
    mean_id = np.array([b_id[bench == b].mean() for b in present])
    theta = np.asarray(kind.irt.abilities(predictor.params), np.float64)
    from irt_jax.evaluation import plots
    coords, share = plots.pca_2d(theta)
    known = labels >= 0
    with np.errstate(invalid="ignore", divide="ignore"):
      model_acc = np.where(known, labels == 1, 0).sum(0) / known.sum(0)
    out = {
        "difficulty": {
            "benchmark_vs_accuracy": correlations(mean_raw, b_acc),
            "query_vs_fraction_correct": correlations(b_raw, q_acc),
            "identified_benchmark_vs_accuracy": correlations(mean_id, b_acc),
            "identified_query_vs_fraction_correct": correlations(b_id, q_acc),
            "per_benchmark": {names[b]: {"mean_difficulty": float(r), "mean_identified": float(i),
                                         "mean_accuracy": float(acc)}
                              for b, r, i, acc in zip(present, mean_raw, mean_id, b_acc)}},
        "abilities": {
            "models": list(predictor.model_names), "dim": int(theta.shape[1]),
            "pca": coords.round(5).tolist(), "pca_variance_share": share.tolist(),
            "accuracy": [None if not np.isfinite(a) else float(a) for a in model_acc],
            "nearest_neighbours": nearest_neighbours(theta, list(predictor.model_names))},
        "plot_data": {"query_identified_difficulty": np.round(b_id, 4).tolist(),
                      "query_fraction_correct": [None if not np.isfinite(v) else round(float(v), 4)
                                                 for v in q_acc]},
    }
    if kind.irt.gate is None:
      out["gate"] = {"skipped": f"kind {kind.name!r} has no gate"}
    else:
      w = np.concatenate([np.asarray(kind.irt.gate(predictor.params,
                                                   np.asarray(emb[s:s + CHUNK], np.float32),
                                                   predictor.spec))
                          for s in range(0, len(emb), CHUNK)])
      out["gate"] = gate_usage(w, bench, names)
    return out

  figure_rank = 0

  def applies(self, run, options: dict) -> bool:
    return True  # cheap: one pass over the split

  def text(self, interp: dict) -> list[str]:
    if "difficulty" in interp:
      d = interp["difficulty"]
      return [f"  interpretability: Pearson(benchmark mean difficulty, mean accuracy) = "
              f"{_num(d['benchmark_vs_accuracy']['pearson'], '.3f')} (identified "
              f"{_num(d['identified_benchmark_vs_accuracy']['pearson'], '.3f')}); per query "
              f"{_num(d['query_vs_fraction_correct']['pearson'], '.3f')}"]
    if "skipped" in interp:
      return [f"  interpretability: skipped ({interp['skipped']})"]
    return []

  def markdown(self, i: dict) -> list[str]:
    out = ["## Interpretability", ""]
    if "skipped" in i:
      return out + [f"Skipped: {i['skipped']}", ""]
    d = i["difficulty"]
    out += ["| difficulty vs accuracy | Pearson | Spearman | n |", "|---|---|---|---|"]
    for key, label in (("benchmark_vs_accuracy", "benchmark mean b vs mean accuracy"),
                       ("identified_benchmark_vs_accuracy",
                        "benchmark mean identified difficulty vs mean accuracy"),
                       ("query_vs_fraction_correct", "query b vs fraction of LLMs correct"),
                       ("identified_query_vs_fraction_correct",
                        "query identified difficulty vs fraction correct")):
      v = d[key]
      out.append(f"| {label} | {_num(v['pearson'], '.3f')} | {_num(v['spearman'], '.3f')} | "
                 f"{v['n']} |")
    out += ["", "Nearest neighbours by ability (cosine of centred theta):", ""]
    for model, nbrs in i["abilities"]["nearest_neighbours"].items():
      out.append(f"- {model}: " + ", ".join(f"{n['model']} ({n['cosine']:.2f})" for n in nbrs))
    return out + _gate_markdown(i.get("gate", {})) + [""]

  def figures(self, report: dict, out_dir: str, tag: str) -> dict[str, str]:
    from irt_jax.evaluation import plots
    interp, files = report.get("interpretability") or {}, {}
    if "abilities" in interp:
      ab = interp["abilities"]
      files["ability map"] = plots.ability_scatter(
          ab["pca"], ab["pca_variance_share"], ab["models"], os.path.join(out_dir, "abilities.png"),
          f"LLM abilities, first two principal axes: {tag}", ab.get("accuracy"))
    if "difficulty" in interp:
      per = interp["difficulty"]["per_benchmark"]
      pq = interp["plot_data"]
      qd = np.asarray(pq["query_identified_difficulty"], np.float64)
      qa = np.asarray([np.nan if v is None else v for v in pq["query_fraction_correct"]])
      ok = np.isfinite(qa)
      corr = interp["difficulty"]["identified_benchmark_vs_accuracy"]
      files["difficulty vs accuracy"] = plots.difficulty_vs_accuracy(
          [v["mean_identified"] for v in per.values()], [v["mean_accuracy"] for v in per.values()],
          list(per), qd[ok], qa[ok], os.path.join(out_dir, "difficulty_vs_accuracy.png"),
          f"Difficulty vs accuracy: {tag}; per benchmark Pearson {corr['pearson']:.2f}")
    return files


def _num(x, fmt: str) -> str:
  return "n/a" if x is None else format(x, fmt)


def _gate_markdown(g: dict) -> list[str]:
  if "per_benchmark" not in g:
    return ["", f"Gate: {g.get('skipped')}"] if g else []
  out = ["", f"Gate over {g['n_experts']} experts: mean per-query entropy "
         f"{g['mean_entropy']:.3f} nats (uniform = {g['max_entropy']:.3f}).", "",
         "| benchmark | gate entropy | most used experts (mean weight) |", "|---|---|---|"]
  for name, v in g["per_benchmark"].items():
    top = sorted(enumerate(v["mean_weight"]), key=lambda t: -t[1])[:3]
    out.append(f"| {name} | {v['mean_entropy']:.3f} | " +
               ", ".join(f"e{e} ({w:.2f})" for e, w in top) + " |")
  return out
