"""The summary figures of LLMRouterBench (Li et al. 2026, arXiv 2601.07206),
computed from a run's routing and cost-frontier results.

Routing (performance-oriented), each on an accuracy `acc` (micro: over
queries; macro: mean over benchmarks, LLMRouterBench's "average accuracy across
datasets"), relative, as fractions:
  * ImpRand (the published version's Gain@R) = (acc - acc_random) / acc_random:
    improvement over the random router (a uniform pick among the known models,
    its expected accuracy).
  * GainBest (Gain@B) = (acc - acc_best_single) / acc_best_single: improvement
    over the best single model (the train-best, as everywhere in this project).
  * ImpMax = (acc - acc_max_expert) / acc_max_expert: improvement over Max Expert
    (routing/hindsight.py: per benchmark, the train-best model; the published
    version shows it as the "Dataset Oracle" bar).
  * OracleGap (Gap@O) = (acc_oracle - acc) / acc_oracle: the share of the
    oracle's accuracy (a model that answers correctly whenever any does) left
    on the table.

Cost-aware (where the data has costs), from the router's swept points of
(mean cost per query, accuracy) and the best single model (the train-best, as
everywhere in this project):
  * PerfGain = (max_p acc_p - acc_best) / acc_best: the best accuracy any swept
    setting reaches, relative to the best single model.
  * CostSave = 1 - min{cost_p : acc_p >= acc_best} / cost_best: the largest cost
    reduction among settings at least as accurate as the best single model
    (None where no setting is).
  * ParetoDist: the mean over the swept points of the Euclidean distance to the
    nearest Pareto-optimal point (no other point both cheaper-or-equal and
    more-accurate-or-equal, one strictly) among the swept points and the single
    models, with cost divided by the largest cost among them (so both axes run
    over [0, 1]). LLMRouterBench builds the frontier over every compared method;
    here it is over one run and the single models, so 0 means every swept
    setting is on that frontier (no single model, and no other setting, beats it
    on both axes).
"""

from __future__ import annotations

import numpy as np


def _relative(a: float, b: float) -> float | None:
  return None if b == 0 else float((a - b) / b)


def routing(acc: float, random: float, max_expert: float, oracle: float,
            best_single: float) -> dict:
  """ImpRand, GainBest, ImpMax and OracleGap for one accuracy (fractions, not percents)."""
  return {"imp_rand": _relative(acc, random), "gain_best": _relative(acc, best_single),
          "imp_max": _relative(acc, max_expert),
          "oracle_gap": None if oracle == 0 else float((oracle - acc) / oracle)}


def routing_summary(result: dict) -> dict:
  """{micro: {...}, macro: {...}} from a routing evaluator's result (with the
  max_expert baseline)."""
  b = result["baselines"]
  return {avg: routing(result[avg], b["random"][avg], b["max_expert"][avg], b["oracle"][avg],
                       b["best_single"][avg])
          for avg in ("micro", "macro")}


def pareto_mask(cost: np.ndarray, acc: np.ndarray) -> np.ndarray:
  """True for points no other point dominates (cost <= and acc >=, one strictly)."""
  cost, acc = np.asarray(cost, np.float64), np.asarray(acc, np.float64)
  le = cost[None, :] <= cost[:, None]
  ge = acc[None, :] >= acc[:, None]
  strict = (cost[None, :] < cost[:, None]) | (acc[None, :] > acc[:, None])
  return ~(le & ge & strict).any(axis=1)


def pareto_dist(cost: np.ndarray, acc: np.ndarray, other_cost, other_acc) -> float:
  """Mean distance of the (cost, acc) points to the Pareto set of them and the others."""
  all_c = np.concatenate([np.asarray(cost, np.float64), np.asarray(other_cost, np.float64)])
  all_a = np.concatenate([np.asarray(acc, np.float64), np.asarray(other_acc, np.float64)])
  scale = all_c.max() if all_c.max() > 0 else 1.0
  front = pareto_mask(all_c, all_a)
  fc, fa = all_c[front] / scale, all_a[front]
  pc, pa = np.asarray(cost, np.float64) / scale, np.asarray(acc, np.float64)
  d = np.sqrt((pc[:, None] - fc[None, :]) ** 2 + (pa[:, None] - fa[None, :]) ** 2)
  return float(d.min(axis=1).mean())


def cost_summary(frontier: dict) -> dict:
  """PerfGain, CostSave and ParetoDist from a cost-frontier result."""
  pc = np.array([p["cost"] for p in frontier["points"]])
  pa = np.array([p["accuracy"] for p in frontier["points"]])
  best = frontier["baselines"]["best_single"]
  enough = pa >= best["accuracy"]
  save = None
  if enough.any() and best["cost"] > 0:
    save = float(1 - pc[enough].min() / best["cost"])
  singles = frontier["single_models"]
  return {"perf_gain": _relative(float(pa.max()), best["accuracy"]), "cost_save": save,
          "pareto_dist": pareto_dist(pc, pa, [s["cost"] for s in singles],
                                     [s["accuracy"] for s in singles])}


# ----------------------------------------------------------------------------
# Text for the reports (evaluation/report.py prints these lines).

# Baselines that read more than a router may: named with what they need.
BASELINE_LABELS = {"max_expert": "max_expert (needs the benchmark label)"}


def baseline_label(name: str) -> str:
  return BASELINE_LABELS.get(name, name)


def _pct(x) -> str:
  return "n/a" if x is None else f"{100 * x:+.2f}%"


_ROUTING_LABELS = (("imp_rand", "ImpRand"), ("gain_best", "GainBest"), ("imp_max", "ImpMax"),
                   ("oracle_gap", "OracleGap"))


def routing_lines(result: dict) -> list[str]:
  """One text line of ImpRand / GainBest / ImpMax / OracleGap (micro / macro), if computed."""
  if "field" not in result:
    return []
  f = result["field"]
  return ["  field (LLMRouterBench; micro / macro): " + ", ".join(
      f"{label} {_pct(f['micro'][k])} / {_pct(f['macro'][k])}"
      for k, label in _ROUTING_LABELS)]


def cost_lines(frontier: dict, label: str = "cost frontier") -> list[str]:
  """One text line of PerfGain / CostSave / ParetoDist, if computed."""
  if "field" not in frontier:
    return []
  f = frontier["field"]
  return [f"  {label}, field (LLMRouterBench): PerfGain {_pct(f['perf_gain'])}, "
          f"CostSave {_pct(f['cost_save'])}, ParetoDist {f['pareto_dist']:.4f}"]


# ----------------------------------------------------------------------------
# The comparison table of compare_kinds: the routing figures of every kind, from
# the prediction files the paired intervals read (evaluation/paired.py).

def _averages(values: np.ndarray, benchmark: np.ndarray) -> dict:
  return {"micro": float(values.mean()),
          "macro": float(np.mean([values[benchmark == b].mean() for b in np.unique(benchmark)]))}


def reference_accuracies(scored) -> dict:
  """Oracle and random routing (micro / macro) of a paired.Scored's queries."""
  n = len(scored.success)
  right = np.bincount(scored.cell_query, scored.cell_label, n)
  count = np.bincount(scored.cell_query, minlength=n)
  return {"oracle": _averages((right > 0).astype(np.float64), scored.benchmark),
          "random": _averages(right / count, scored.benchmark)}


def field_table(datasets, kinds, preds_dir: str) -> str:
  """Markdown: ImpRand / GainBest / ImpMax / OracleGap (micro; macro) of each
  kind with prediction files (the mean of its seeds' accuracies), against the
  best single model's and Max Expert's files."""
  from irt_jax.evaluation import paired
  lines = ["| dataset | kind | " + " | ".join(f"{label} %" for _, label in _ROUTING_LABELS) + " |",
           "|---|---|---|---|---|---|"]
  pct = lambda f, k: "; ".join("n/a" if f[a][k] is None else f"{100 * f[a][k]:+.2f}"
                               for a in ("micro", "macro"))
  for dataset in datasets:
    expert_files = paired.files_for(preds_dir, dataset, "max_expert")
    single_files = paired.files_for(preds_dir, dataset, "best_single")
    if not expert_files or not single_files:
      lines.append(f"| {dataset} | | no max_expert or best_single predictions | | | |")
      continue
    expert, single = paired.load(expert_files[0]), paired.load(single_files[0])
    ref = reference_accuracies(expert)
    ref["max_expert"] = _averages(expert.success, expert.benchmark)
    ref["best_single"] = _averages(single.success, single.benchmark)
    for kind in kinds:
      runs = [paired.load(p) for p in paired.files_for(preds_dir, dataset, kind)]
      if not runs:
        continue
      acc = {avg: float(np.mean([_averages(r.success, r.benchmark)[avg] for r in runs]))
             for avg in ("micro", "macro")}
      f = {avg: routing(acc[avg], ref["random"][avg], ref["max_expert"][avg], ref["oracle"][avg],
                        ref["best_single"][avg])
           for avg in ("micro", "macro")}
      lines.append(f"| {dataset} | {kind} | " + " | ".join(pct(f, k) for k, _ in _ROUTING_LABELS)
                   + " |")
  note = ("LLMRouterBench's routing figures (docs/routing.md), relative, in %: micro (over test "
          "queries); macro (mean over benchmarks). Max Expert needs the benchmark label.")
  return note + "\n\n" + "\n".join(lines) + "\n"
