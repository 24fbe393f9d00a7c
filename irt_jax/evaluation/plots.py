"""PNG plots of evaluation results (matplotlib, Agg backend: no display needed).

Each function takes plain arrays or result dicts (never a model) and writes one
PNG, returning its path, so reports and the README link files that a test can
check exist and are non-empty.
"""

from __future__ import annotations

import os

from irt_jax import plotting  # first: it sets matplotlib's Agg backend

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from irt_jax.numerics import pca_2d  # noqa: E402,F401 - used by the report code as plots.pca_2d


def ability_scatter(coords, share, names, path: str, title: str = "LLM abilities",
                    accuracy=None) -> str:
  """Already-projected ability coordinates [M, 2] with names (and accuracy as colour)."""
  coords = np.asarray(coords, np.float64)
  if accuracy is not None:
    accuracy = np.asarray([np.nan if a is None else a for a in accuracy], np.float64)
  fig, ax = plt.subplots(figsize=(8, 6.5))
  c = accuracy if accuracy is not None else "tab:blue"
  sc = ax.scatter(coords[:, 0], coords[:, 1], c=c, cmap="viridis", s=40, zorder=3)
  if accuracy is not None:
    fig.colorbar(sc, ax=ax, label="mean accuracy on the split")
  fontsize = 8 if len(names) <= 20 else 6
  span = np.ptp(coords, axis=0) + 1e-12
  mid_x = coords[:, 0].min() + span[0] / 2
  placed = []
  for (x, y), name in zip(coords, names):
    # Labels point away from the centre line; a label near an earlier one goes below it.
    close = [py for px, py in placed if abs(px - x) < 0.15 * span[0]
             and abs(py - y) < 0.05 * span[1]]
    placed.append((x, y))
    right = x <= mid_x
    shift = 0 if not close else (9 if y >= np.mean(close) else -12) * len(close)
    ax.annotate(plotting.short(name), (x, y), fontsize=fontsize,
                xytext=(4 if right else -4, 2 + shift), textcoords="offset points",
                ha="left" if right else "right")
  ax.margins(0.12)
  ax.set_xlabel(f"ability PC1 ({100 * share[0]:.0f}% of variance)")
  ax.set_ylabel(f"ability PC2 ({100 * share[1]:.0f}% of variance)")
  ax.set_title(title)
  ax.grid(alpha=0.3)
  return plotting.save(fig, path)


def difficulty_vs_accuracy(bench_difficulty, bench_accuracy, bench_names, query_difficulty,
                           query_accuracy, path: str, title: str = "") -> str:
  """Left: each benchmark's mean difficulty vs its mean accuracy; right: per query."""
  fig, (left, right) = plt.subplots(1, 2, figsize=(12, 5))
  left.scatter(bench_difficulty, bench_accuracy, s=50, color="tab:purple", zorder=3)
  for x, y, n in zip(bench_difficulty, bench_accuracy, bench_names):
    left.annotate(plotting.short(n, 20), (x, y), fontsize=8, xytext=(4, 2), textcoords="offset points")
  left.set_xlabel("mean identified difficulty of the benchmark's queries (logit)")
  left.set_ylabel("mean accuracy over LLMs")
  left.set_title("per benchmark")
  left.grid(alpha=0.3)
  right.scatter(query_difficulty, query_accuracy, s=4, alpha=0.25, color="tab:blue",
                label="one query")
  qd, qa = np.asarray(query_difficulty), np.asarray(query_accuracy)
  if len(qd) > 10:
    edges = np.quantile(qd, np.linspace(0, 1, 11))
    idx = np.clip(np.searchsorted(edges, qd, side="right") - 1, 0, 9)
    centres = [qd[idx == i].mean() for i in range(10) if (idx == i).any()]
    means = [qa[idx == i].mean() for i in range(10) if (idx == i).any()]
    right.plot(centres, means, "-o", color="black", label="decile means")
  right.set_xlabel("identified difficulty of the query (logit)")
  right.set_ylabel("fraction of LLMs correct")
  right.set_title("per query")
  right.legend(loc="upper right")
  right.grid(alpha=0.3)
  fig.suptitle(title or "Difficulty vs accuracy")
  return plotting.save(fig, path)


def reliability_diagram(curves: dict, path: str, title: str = "Reliability diagram") -> str:
  """curves: label -> {"confidence": [bins], "accuracy": [bins], "count": [bins], "ece"}."""
  fig, (ax, hist) = plt.subplots(2, 1, figsize=(6.5, 7.5), height_ratios=(3, 1), sharex=True)
  ax.plot([0, 1], [0, 1], "--", color="gray", label="perfect calibration")
  colours = ["tab:blue", "tab:red", "tab:green"]
  edges = None
  for (label, c), colour in zip(curves.items(), colours):
    conf, acc, count = (np.asarray([np.nan if v is None else v for v in c[k]], np.float64)
                        for k in ("confidence", "accuracy", "count"))
    ok = count > 0
    ax.plot(conf[ok], acc[ok], "-o", color=colour, ms=4, label=f"{label} (ECE {c['ece']:.4f})")
    edges = np.asarray(c["edges"])
    hist.bar((edges[:-1] + edges[1:]) / 2, count / max(count.sum(), 1), width=np.diff(edges),
             alpha=0.4, color=colour, label=label)
  ax.set_ylabel("observed fraction correct")
  ax.set_title(title)
  ax.legend(loc="upper left")
  ax.grid(alpha=0.3)
  hist.set_xlabel("predicted P(correct)")
  hist.set_ylabel("share of cells")
  hist.set_xlim(0, 1)
  return plotting.save(fig, path)


def routing_per_benchmark(reports: dict, path: str, title: str = "") -> str:
  """Grouped bars: routing accuracy per benchmark for each compared run, plus baselines."""
  labels = list(reports)
  benches = list(next(iter(reports.values()))["routing"]["per_benchmark"])
  width = 0.8 / max(len(labels), 1)
  fig, ax = plt.subplots(figsize=(max(7, 1.1 * len(benches) + 2), 5))
  x = np.arange(len(benches))
  for i, label in enumerate(labels):
    per = reports[label]["routing"]["per_benchmark"]
    ax.bar(x + (i - (len(labels) - 1) / 2) * width, [100 * per.get(b, np.nan) for b in benches],
           width, label=f"{label} ({reports[label].get('kind', '?')})")
  ax.set_xticks(x, [plotting.short(b, 16) for b in benches], rotation=30, ha="right")
  ax.set_ylabel("routing accuracy (% of queries answered correctly)")
  ax.set_xlabel("benchmark")
  ax.set_title(title or "Routing accuracy per benchmark")
  ax.legend(fontsize=8)
  ax.grid(axis="y", alpha=0.3)
  return plotting.save(fig, path)
