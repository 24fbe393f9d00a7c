"""Report writing: report.json (stable keys), and text tables for the terminal."""

from __future__ import annotations

import os

from irt_jax import utils


def write(report: dict, output_dir: str) -> str:
  os.makedirs(output_dir, exist_ok=True)
  path = os.path.join(output_dir, "report.json")
  utils.write_json(path, report)
  return path


def _pct(x) -> str:
  return "   n/a" if x is None else f"{100 * x:6.2f}"


def format_report(report: dict) -> str:
  c, r = report["correctness"], report["routing"]
  lines = [f"{report['dataset']} / {report['split']}: {report['n_models']} models x "
           f"{report['n_queries']} queries ({report.get('kind', 'irtnet')}, checkpoint step "
           f"{report['checkpoint_step']})",
           f"  correctness  acc {c['accuracy']:.4f}  auc {c['auc']:.4f}  "
           f"log_loss {c['log_loss']:.4f}  brier {c['brier']:.4f}",
           f"  routing      {'':12s} micro   macro",
           f"    {'this run':22s} {_pct(r['micro'])}  {_pct(r['macro'])}"]
  for name, b in r["baselines"].items():
    lines.append(f"    {name:22s} {_pct(b['micro'])}  {_pct(b['macro'])}")
  lines.append("  per benchmark (this run's routing): " + ", ".join(
      f"{k} {100 * v:.2f}" for k, v in r["per_benchmark"].items()))
  truth = report.get("synthetic_truth", {})
  if "difficulty_spearman" in truth:
    lines.append(f"  synthetic truth: Spearman(learned, true difficulty) = "
                 f"{truth['difficulty_spearman']:.4f}")
  cf = report.get("cost_frontier", {})
  if "aiq" in cf:
    match = cf["cost_to_match_best_single"]
    lines.append(f"  cost frontier ({cf['cost_source']}, {cf['cost_unit']}): AIQ {_pct(cf['aiq'])}  "
                 f"peak {_pct(cf['peak_accuracy'])}  cost to match best single "
                 f"{'never' if match is None else format(match, '.4g')}  APGR "
                 f"{'n/a' if cf['apgr'] is None else format(cf['apgr'], '.3f')}  CPT(50%) "
                 f"{_pct(cf['cpt50'])}")
  return "\n".join(lines)


COMPARE_COLUMNS = (("accuracy", "correctness", "accuracy"), ("auc", "correctness", "auc"),
                   ("log_loss", "correctness", "log_loss"), ("brier", "correctness", "brier"))


def compare_rows(reports: dict[str, dict]) -> list[dict]:
  """One row per run (then oracle / best single / random from the first), flat."""
  rows = []
  for label, rep in reports.items():
    row = {"run": label, "kind": rep.get("kind")}
    for col, group, key in COMPARE_COLUMNS:
      row[col] = rep[group][key]
    row["routing_micro"], row["routing_macro"] = rep["routing"]["micro"], rep["routing"]["macro"]
    rows.append(row)
  first = next(iter(reports.values()))
  for name, b in first["routing"]["baselines"].items():
    rows.append({"run": name, "kind": None, "accuracy": None, "auc": None, "log_loss": None,
                 "brier": None, "routing_micro": b["micro"], "routing_macro": b["macro"]})
  return rows


def format_compare(rows: list[dict], dataset: str, split: str) -> str:
  head = (f"{dataset} / {split}\n{'run':28s} {'kind':10s} {'acc':>7s} {'auc':>7s} "
          f"{'logloss':>8s} {'brier':>7s} {'route micro':>11s} {'macro':>7s}")
  lines = [head]
  f = lambda v, w, fmt: (" " * (w - 3) + "n/a") if v is None else format(v, fmt).rjust(w)
  for r in rows:
    lines.append(f"{r['run'][:28]:28s} {(r['kind'] or '-'):10s} {f(r['accuracy'], 7, '.4f')} "
                 f"{f(r['auc'], 7, '.4f')} {f(r['log_loss'], 8, '.4f')} "
                 f"{f(r['brier'], 7, '.4f')} "
                 f"{f(None if r['routing_micro'] is None else 100 * r['routing_micro'], 11, '.2f')} "
                 f"{f(None if r['routing_macro'] is None else 100 * r['routing_macro'], 7, '.2f')}")
  return "\n".join(lines)
