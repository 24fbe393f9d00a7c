"""PNG plots of evaluation results (matplotlib, Agg backend: no display needed).

Each function takes plain arrays or result dicts (never a model) and writes one
PNG, returning its path, so reports and the README link files that a test can
check exist and are non-empty.
"""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402,F401
import numpy as np  # noqa: E402

from irt_jax.numerics import pca_2d  # noqa: E402,F401 - used by the report code as plots.pca_2d

DPI = 110
SELECTION_STYLE = {"random": ("tab:blue", "o", "random k + model"),
                   "adaptive": ("tab:red", "s", "adaptive k + model"),
                   "naive": ("tab:gray", "^", "naive mean of k random labels"),
                   "naive_adaptive": ("tab:orange", "v", "naive mean of k adaptive labels")}


def _save(fig, path: str) -> str:
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.tight_layout()
  fig.savefig(path, dpi=DPI)
  plt.close(fig)
  return path


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
    ax.annotate(_short(name), (x, y), fontsize=fontsize,
                xytext=(4 if right else -4, 2 + shift), textcoords="offset points",
                ha="left" if right else "right")
  ax.margins(0.12)
  ax.set_xlabel(f"ability PC1 ({100 * share[0]:.0f}% of variance)")
  ax.set_ylabel(f"ability PC2 ({100 * share[1]:.0f}% of variance)")
  ax.set_title(title)
  ax.grid(alpha=0.3)
  return _save(fig, path)


def _short(name: str, width: int = 28) -> str:
  name = str(name).split("/")[-1]
  return name if len(name) <= width else name[:width - 1] + "…"


def difficulty_vs_accuracy(bench_difficulty, bench_accuracy, bench_names, query_difficulty,
                           query_accuracy, path: str, title: str = "") -> str:
  """Left: each benchmark's mean difficulty vs its mean accuracy; right: per query."""
  fig, (left, right) = plt.subplots(1, 2, figsize=(12, 5))
  left.scatter(bench_difficulty, bench_accuracy, s=50, color="tab:purple", zorder=3)
  for x, y, n in zip(bench_difficulty, bench_accuracy, bench_names):
    left.annotate(_short(n, 20), (x, y), fontsize=8, xytext=(4, 2), textcoords="offset points")
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
  return _save(fig, path)


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
  return _save(fig, path)


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
  ax.set_xticks(x, [_short(b, 16) for b in benches], rotation=30, ha="right")
  ax.set_ylabel("routing accuracy (% of queries answered correctly)")
  ax.set_xlabel("benchmark")
  ax.set_title(title or "Routing accuracy per benchmark")
  ax.legend(fontsize=8)
  ax.grid(axis="y", alpha=0.3)
  return _save(fig, path)


def predicted_vs_true(result: dict, path: str, k: str = "0", selection: str = "zero_shot") -> str:
  """One point per LLM per held-out benchmark: predicted vs true accuracy."""
  fig, ax = plt.subplots(figsize=(9, 6.5))
  colours, markers = plt.get_cmap("tab10"), "osD^vP*X<>"
  for i, (bench, s) in enumerate(result["scores"].items()):
    pred = s.get(k, {}).get(selection)
    if pred is None:
      continue
    pairs = [(t, p) for t, p in zip(s["true"], pred) if t is not None and p is not None]
    if not pairs:
      continue
    t, p = np.asarray(pairs).T
    ax.scatter(100 * t, 100 * p, s=24, color=colours(i % 10), marker=markers[i // 10 % 10],
               label=_short(bench, 18), alpha=0.85)
  ax.plot([0, 100], [0, 100], "--", color="gray", label="predicted = true")
  what = "zero-shot (no labels of the benchmark)" if k == "0" else f"k={k}, {selection}"
  m = result["mean"].get(k, {}).get(selection)
  if m:
    what += f": MAE {100 * m['mae']:.1f} pts, bias {100 * m['bias']:+.1f}"
  ax.set_title(f"{result['dataset']}: predicted vs true benchmark accuracy\n{what}", fontsize=10)
  ax.set_xlabel("true accuracy of the LLM on the held-out benchmark (%)")
  ax.set_ylabel("predicted accuracy (%)")
  ax.set_xlim(0, 100)
  ax.set_ylim(0, 100)
  ax.set_aspect("equal")
  ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), title="held-out benchmark",
            title_fontsize=7)
  ax.grid(alpha=0.3)
  return _save(fig, path)


def error_vs_k(result: dict, path: str, metric: str = "mae") -> str:
  """Mean error over held-out benchmarks against the label budget k, per selection."""
  mean = result["mean"]
  ks = sorted((k for k in mean if k != "0"), key=int)
  fig, ax = plt.subplots(figsize=(7, 5))
  for sel, (colour, marker, label) in SELECTION_STYLE.items():
    pts = [(int(k), mean[k][sel][metric]) for k in ks if mean[k].get(sel)]
    if pts:
      x, y = np.asarray(pts).T
      ax.plot(x, 100 * y if metric in ("mae", "bias") else y, marker=marker, color=colour,
              label=label)
  zs = mean.get("0", {}).get("zero_shot")
  if zs:
    v = zs[metric]
    ax.axhline(100 * v if metric in ("mae", "bias") else v, color="black", ls=":",
               label="zero-shot model (k=0)")
  ax.set_xscale("log")
  ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
  ax.set_xticks([int(k) for k in ks], [str(k) for k in ks])
  ax.set_xlabel("labelled queries of the held-out benchmark per LLM (k)")
  unit = " (accuracy points)" if metric in ("mae", "bias") else ""
  ax.set_ylabel(f"mean {metric.upper() if metric == 'mae' else metric}{unit}")
  ax.set_title(f"{result['dataset']}: benchmark-score error vs k "
               f"({result['setup']['kind']}, mean over held-out benchmarks)", fontsize=10)
  ax.legend(fontsize=8)
  ax.grid(alpha=0.3, which="both")
  return _save(fig, path)


def benchmark_prediction_plots(result: dict, out_dir: str) -> dict[str, str]:
  """The standard plots of a benchmark-prediction result; title -> path."""
  files = {"predicted vs true, zero-shot": predicted_vs_true(
      result, os.path.join(out_dir, "predicted_vs_true_k0.png"))}
  ks = sorted((k for k in result["mean"] if k != "0"), key=int)
  if ks:
    k = "25" if "25" in ks else ks[0]
    files[f"predicted vs true, k={k} adaptive"] = predicted_vs_true(
        result, os.path.join(out_dir, f"predicted_vs_true_k{k}_adaptive.png"), k, "adaptive")
    files["error vs k"] = error_vs_k(result, os.path.join(out_dir, "error_vs_k.png"))
  return files


def report_plots(report: dict, out_dir: str) -> dict[str, str]:
  """The plots of one eval report (those its evaluators have data for); title -> path."""
  files = {}
  tag = f"{report['dataset']} / {report['split']} ({report.get('kind', '?')})"
  interp = report.get("interpretability") or {}
  if "abilities" in interp:
    ab = interp["abilities"]
    files["ability map"] = ability_scatter(
        ab["pca"], ab["pca_variance_share"], ab["models"], os.path.join(out_dir, "abilities.png"),
        f"LLM abilities, first two principal axes: {tag}", ab.get("accuracy"))
  if "difficulty" in interp:
    per = interp["difficulty"]["per_benchmark"]
    pq = interp["plot_data"]
    qd = np.asarray(pq["query_identified_difficulty"], np.float64)
    qa = np.asarray([np.nan if v is None else v for v in pq["query_fraction_correct"]])
    ok = np.isfinite(qa)
    corr = interp["difficulty"]["identified_benchmark_vs_accuracy"]
    files["difficulty vs accuracy"] = difficulty_vs_accuracy(
        [v["mean_identified"] for v in per.values()], [v["mean_accuracy"] for v in per.values()],
        list(per), qd[ok], qa[ok], os.path.join(out_dir, "difficulty_vs_accuracy.png"),
        f"Difficulty vs accuracy: {tag}; per benchmark Pearson {corr['pearson']:.2f}")
  cal = report.get("calibration") or {}
  if "before" in cal:
    curves = {"model": cal["before"]}
    t = cal.get("temperature", {})
    if "after" in t:
      curves[f"temperature {t['value']:.2f} (fitted on val)"] = t["after"]
    files["reliability diagram"] = reliability_diagram(
        curves, os.path.join(out_dir, "reliability.png"), f"Reliability diagram: {tag}")
  if "routing" in report:
    files["routing accuracy per benchmark"] = routing_per_benchmark(
        {report.get("kind", "run"): report}, os.path.join(out_dir, "routing_per_benchmark.png"),
        f"Routing accuracy per benchmark: {tag}")
  return files


def grid_plot_estimator(records: list[dict], dataset: str, protocol: str,
                        choice: str) -> tuple[str | None, bool]:
  """(estimator, held_out) drawn for one (protocol, choice) of `dataset`: the
  model-based estimator with the lowest MAE averaged over k on the *other*
  datasets of the same kind (held_out True), so the plot does not pick on the
  figures it shows; with no other dataset, the lowest on this one's own
  (held_out False, and the legend says "in-sample")."""
  kind = {r["dataset"]: r.get("kind") for r in records}
  def best(datasets):
    by_est: dict = {}
    for r in records:
      if (r["dataset"] in datasets and (r["protocol"], r["choice"]) == (protocol, choice)
          and r["estimator"] != "naive" and r["mae"]["mean"] is not None):
        by_est.setdefault(r["estimator"], {}).setdefault(r["dataset"], []).append(r["mae"]["mean"])
    full = {e: np.mean([np.mean(v) for v in per.values()]) for e, per in by_est.items()
            if set(per) == set(datasets)}
    return min(full, key=full.get) if full else None
  others = sorted(d for d in kind if d != dataset and kind[d] == kind[dataset])
  if others:
    return best(others), True
  return best([dataset]), False


def grid_error_vs_k(records: list[dict], path: str) -> str:
  """Benchmark-score MAE against k, one panel per dataset: per (protocol, choice)
  the model-based estimator chosen on the other datasets (grid_plot_estimator),
  and the naive mean of random labels; error bars are the std over draws."""
  datasets = sorted({r["dataset"] for r in records})
  fig, axes = plt.subplots(1, len(datasets), figsize=(5.2 * len(datasets), 4.6), squeeze=False)
  colours = plt.get_cmap("tab10")
  for ax, d in zip(axes[0], datasets):
    rows = [r for r in records if r["dataset"] == d and r["mae"]["mean"] is not None]
    cells = list(dict.fromkeys((r["protocol"], r["choice"]) for r in rows))
    lines = []
    for p, c in cells:
      est, held_out = grid_plot_estimator(records, d, p, c)
      chosen = [r for r in rows if (r["protocol"], r["choice"], r["estimator"]) == (p, c, est)]
      if chosen:
        lines.append((f"{p}/{c}: {est}" + ("" if held_out else " (in-sample)"), chosen, "-"))
      naive = [r for r in rows if (r["protocol"], r["choice"], r["estimator"]) == (p, c, "naive")]
      if c == "random" and naive:
        lines.append((f"{p}/random: naive mean", naive, ":"))
    for i, (label, rs, style) in enumerate(lines):
      rs = sorted(rs, key=lambda r: r["k"])
      ax.errorbar([r["k"] for r in rs], [100 * r["mae"]["mean"] for r in rs],
                  yerr=[100 * (r["mae"]["std"] or 0) for r in rs], ls=style, marker="o",
                  ms=3, capsize=2, color=colours(i % 10), label=label)
    ks = sorted({r["k"] for r in rows})
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.set_xlabel("labelled queries k (per LLM)")
    ax.set_ylabel("MAE of the benchmark score (points)")
    ax.set_title(f"{d}: mean over held-out benchmarks", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=6)
  fig.suptitle("each choice's estimator chosen on the other datasets (lowest MAE averaged over k)",
               fontsize=9)
  return _save(fig, path)
