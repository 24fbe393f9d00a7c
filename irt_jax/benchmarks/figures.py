"""PNG figures of benchmark-score prediction: predicted vs true scores, error
against the label budget k, and the grid's MAE against k (each estimator chosen
on the other datasets)."""

from __future__ import annotations

import os

from irt_jax import plotting  # first: it sets matplotlib's Agg backend

import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402

SELECTION_STYLE = {"random": ("tab:blue", "o", "random k + model"),
                   "adaptive": ("tab:red", "s", "adaptive k + model"),
                   "naive": ("tab:gray", "^", "naive mean of k random labels"),
                   "naive_adaptive": ("tab:orange", "v", "naive mean of k adaptive labels")}


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
               label=plotting.short(bench, 18), alpha=0.85)
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
  return plotting.save(fig, path)


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
  return plotting.save(fig, path)


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
  return plotting.save(fig, path)
