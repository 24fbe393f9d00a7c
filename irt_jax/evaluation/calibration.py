"""Calibration of P(correct): expected calibration error, reliability curve,
and an optional temperature fitted on the validation split.

ECE uses equal-width bins over [0, 1] (bin i holds i/n <= p < (i+1)/n, the last
bin also p = 1): sum over bins of (cells in bin / cells) * |accuracy - mean p|.
"""

from __future__ import annotations

import os

import numpy as np
from scipy import optimize

from irt_jax import numerics

N_BINS = 15


def reliability(proba, labels, n_bins: int = N_BINS) -> dict:
  """Per-bin mean predicted P, observed fraction correct and count; and the ECE."""
  p = np.asarray(proba, np.float64).ravel()
  y = np.asarray(labels, np.float64).ravel()
  edges = np.linspace(0.0, 1.0, n_bins + 1)
  idx = np.clip(np.floor(p * n_bins).astype(np.int64), 0, n_bins - 1)
  count = np.bincount(idx, minlength=n_bins).astype(np.float64)
  sum_p = np.bincount(idx, weights=p, minlength=n_bins)
  sum_y = np.bincount(idx, weights=y, minlength=n_bins)
  with np.errstate(invalid="ignore", divide="ignore"):
    conf, acc = sum_p / count, sum_y / count
  ece = float(np.sum(np.abs(sum_y - sum_p)) / max(len(p), 1))
  nan_to_none = lambda v: [None if not np.isfinite(x) else float(x) for x in v]
  return {"ece": ece, "n_bins": n_bins, "edges": edges.tolist(),
          "confidence": nan_to_none(conf), "accuracy": nan_to_none(acc),
          "count": count.astype(int).tolist()}


def ece(proba, labels, n_bins: int = N_BINS) -> float:
  return reliability(proba, labels, n_bins)["ece"]


def nll(logits, labels, temperature: float = 1.0) -> float:
  """Mean binary cross-entropy of sigmoid(logits / T) (computed stably)."""
  z = np.asarray(logits, np.float64) / temperature
  y = np.asarray(labels, np.float64)
  return float(np.mean(np.logaddexp(0.0, z) - y * z))


def fit_temperature(logits, labels) -> float:
  """T > 0 minimising the NLL of sigmoid(logits / T) (searched on log T)."""
  res = optimize.minimize_scalar(lambda log_t: nll(logits, labels, float(np.exp(log_t))),
                                 bounds=(np.log(0.05), np.log(20.0)), method="bounded")
  return float(np.exp(res.x))


class CalibrationEvaluator:
  """ECE and reliability data on the split; with option `temperature`, also after
  dividing logits by a temperature fitted on the val split."""
  name = "calibration"

  def run(self, ctx) -> dict:
    pred = ctx.predictions
    known = pred.known
    logits, labels = pred.logits[known].astype(np.float64), pred.labels[known]
    out = {"ece": None, "n_cells": int(known.sum()),
           "before": reliability(numerics.sigmoid(logits), labels)}
    out["ece"] = out["before"]["ece"]
    if not ctx.options.get("temperature"):
      out["temperature"] = {"skipped": "not asked (eval.py --calibration_temperature)"}
      return out
    if "val" not in ctx.data.splits:
      out["temperature"] = {"skipped": "no val split to fit a temperature on"}
      return out
    val = ctx.data.split("val")
    val_logits = ctx.run.predictor.logits(ctx.data.embeddings[val.queries])[val.mask]
    t = fit_temperature(val_logits, val.labels[val.mask])
    after = reliability(numerics.sigmoid(logits / t), labels)
    out["temperature"] = {"value": t, "fitted_on": "val", "ece_after": after["ece"],
                          "nll_before": nll(logits, labels), "nll_after": nll(logits, labels, t),
                          "after": after}
    return out

  figure_rank = 0

  def applies(self, run, options: dict) -> bool:
    return True  # cheap: one pass over the split

  def text(self, cal: dict) -> list[str]:
    if "ece" not in cal:
      return []
    t = cal.get("temperature", {})
    after = (f"; after temperature {t['value']:.3f} (fitted on val): {t['ece_after']:.4f}"
             if "value" in t else "")
    return [f"  calibration: ECE (15 bins) {cal['ece']:.4f}{after}"]

  def markdown(self, cal: dict) -> list[str]:
    out = ["## Calibration", "", f"ECE (15 equal-width bins): {cal['ece']:.4f} over "
           f"{cal['n_cells']} cells."]
    t = cal.get("temperature", {})
    if "value" in t:
      out.append(f"Temperature fitted on val: T = {t['value']:.3f}; ECE {cal['ece']:.4f} -> "
                 f"{t['ece_after']:.4f}; log loss {t['nll_before']:.4f} -> {t['nll_after']:.4f}.")
    return out + [""]

  def figures(self, report: dict, out_dir: str, tag: str) -> dict[str, str]:
    from irt_jax.evaluation import plots
    cal = report.get("calibration") or {}
    if "before" not in cal:
      return {}
    curves = {"model": cal["before"]}
    t = cal.get("temperature", {})
    if "after" in t:
      curves[f"temperature {t['value']:.2f} (fitted on val)"] = t["after"]
    return {"reliability diagram": plots.reliability_diagram(
        curves, os.path.join(out_dir, "reliability.png"), f"Reliability diagram: {tag}")}
