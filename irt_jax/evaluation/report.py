"""Report writing: report.json (stable keys), report.md and its figures, and text
tables for the terminal; each evaluator (evaluation.evaluators) brings its own
section, so this module only walks the registry."""

from __future__ import annotations

import os

import numpy as np

from irt_jax import plotting
from irt_jax import utils
from irt_jax.evaluation import evaluators
from irt_jax.evaluation import field_metrics


def write(report: dict, output_dir: str) -> str:
  os.makedirs(output_dir, exist_ok=True)
  path = os.path.join(output_dir, "report.json")
  utils.write_json(path, report)
  return path


def _pct(x) -> str:
  return "   n/a" if x is None else f"{100 * x:6.2f}"


def format_report(report: dict) -> str:
  """The terminal summary: a header, then each evaluator's lines (registry order)."""
  lines = [f"{report['dataset']} / {report['split']}: {report['n_models']} models x "
           f"{report['n_queries']} queries ({report.get('kind', 'irtnet')}, checkpoint step "
           f"{report['checkpoint_step']})"]
  for name, cls in evaluators.REGISTRY.items():
    if name in report:
      lines += cls().text(report[name])
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


def paired_lines(result: dict) -> list[str]:
  """Text lines: each run's paired difference from the reference run, with its
  interval; 'better' / 'worse' only where the interval excludes 0."""
  if not result.get("paired"):
    return []
  lines = [f"paired differences from {result['reference']} (95% bootstrap interval over "
           f"{result['split']} queries, {result['n_resamples']} resamples):"]
  for label, diffs in result["paired"].items():
    cells = []
    for col, scale, _, dfmt in PAIRED_COLUMNS:
      d = diffs[col]
      mark = {"win": " better", "loss": " worse", "tie": ""}[d["verdict"]]
      cells.append(f"{col} {scale * d['diff']:{dfmt}} [{scale * d['low']:{dfmt}}, "
                   f"{scale * d['high']:{dfmt}}]{mark}")
    lines.append(f"  {label}: " + "; ".join(cells))
  return lines


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


# ----------------------------------------------------------------------------
# report.md: one run's tables and plot links.

def _f(x, fmt=".4f") -> str:
  return "n/a" if x is None else format(x, fmt)


def markdown(report: dict, plot_files: dict | None = None,
             relative_to: str | None = None) -> str:
  """The report as markdown: each evaluator's section where it has one
  (registry order), then the plots."""
  out = [f"# {report['dataset']} / {report['split']}: {report.get('kind', '?')} "
         f"(checkpoint step {report['checkpoint_step']})", "",
         f"{report['n_models']} LLMs x {report['n_queries']} queries.", ""]
  for name, cls in evaluators.REGISTRY.items():
    if report.get(name):
      out += cls().markdown(report[name])
  out += plotting.markdown_links(plot_files, relative_to)
  return "\n".join(out) + "\n"


def report_plots(report: dict, out_dir: str) -> dict[str, str]:
  """The PNGs of one eval report, title -> path: each evaluator's figures where it
  has the data, ordered by figure_rank."""
  tag = f"{report['dataset']} / {report['split']} ({report.get('kind', '?')})"
  files = {}
  for cls in sorted(evaluators.REGISTRY.values(), key=lambda c: c.figure_rank):
    if cls.name in report:
      files.update(cls().figures(report, out_dir, tag))
  return files


def write_markdown(report: dict, output_dir: str, plot_files: dict | None = None) -> str:
  path = os.path.join(output_dir, "report.md")
  with open(path, "w", encoding="utf-8") as f:
    f.write(markdown(report, plot_files, output_dir))
  return path


def compare_markdown(result: dict, plot_files: dict | None = None,
                     relative_to: str | None = None) -> str:
  rows = result["table"]
  out = [f"# {result['dataset']} / {result['split']}: compared runs", "",
         "| run | kind | accuracy | AUC | log loss | Brier | routing micro | macro |",
         "|---|---|---|---|---|---|---|---|"]
  pct = lambda v: "n/a" if v is None else f"{100 * v:.2f}"
  for r in rows:
    out.append(f"| {r['run']} | {r['kind'] or '-'} | {_f(r['accuracy'])} | {_f(r['auc'])} | "
               f"{_f(r['log_loss'])} | {_f(r['brier'])} | {pct(r['routing_micro'])} | "
               f"{pct(r['routing_macro'])} |")
  if result.get("paired"):
    out += ["", "```"] + paired_lines(result) + ["```"]
  out += plotting.markdown_links(plot_files, relative_to)
  return "\n".join(out) + "\n"


# ----------------------------------------------------------------------------
# The README's kinds table: records of experiments/compare_kinds.py, over seeds.

KINDS_COLUMNS = (("accuracy", 100, ".2f"), ("auc", 1, ".4f"), ("routing_micro", 100, ".2f"),
                 ("routing_macro", 100, ".2f"))


def kinds_table(records: list[dict], datasets: list[str], kinds: list[str]) -> str:
  """Markdown: one row per (dataset, kind), mean +- std over the seeds recorded.

  The std is the population one (ddof 0) of the seeds that ran: with 3 seeds it reads
  sqrt(2/3) of the sample std. Rows are exactly `kinds`, in that order, each with a
  'not run' row when no record has it: one records file holds several comparisons
  (every kind; the paper config on blocks and pairs), and each table shows the one
  asked for. The oracle / best-single / random rows come from the dataset's first
  record: they depend on the test split only.
  """
  lines = ["| dataset | kind | seeds | test accuracy | test AUC | routing micro | routing macro |"
           " train s |", "|---|---|---|---|---|---|---|---|"]
  for dataset in datasets:
    rows = [r for r in records if r["dataset"] == dataset]
    for kind in kinds:
      rs = sorted((r for r in rows if r["kind"] == kind), key=lambda r: r["seed"])
      if not rs:
        lines.append(f"| {dataset} | {kind} | 0 | not run | | | | |")
        continue
      cells = []
      for col, scale, fmt in KINDS_COLUMNS:
        v = scale * np.array([r[col] for r in rs])
        cells.append(f"{v.mean():{fmt}} +- {v.std():{fmt}}" if len(v) > 1 else f"{v[0]:{fmt}}")
      seconds = np.mean([r["seconds"] for r in rs])
      lines.append(f"| {dataset} | {kind} | {len(rs)} | " + " | ".join(cells) + f" | {seconds:.0f} |")
    if rows:
      for name in ("oracle", "best_single", "max_expert", "random"):
        b = rows[0]["baselines"].get(name)  # max_expert: records since it was added
        if b is None:
          continue
        lines.append(f"| {dataset} | *{field_metrics.baseline_label(name)}* | | | | "
                     f"{100 * b['micro']:.2f} | "
                     f"{100 * b['macro']:.2f} | |")
  return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------
# Paired differences against the first kind (evaluation/paired.py).

PAIRED_COLUMNS = (("auc", 1, ".4f", "+.4f"), ("log_loss", 1, ".4f", "+.4f"),
                  ("routing_micro", 100, ".2f", "+.2f"), ("routing_macro", 100, ".2f", "+.2f"))


# Routers written by compare_kinds from the train split (routing only).
HINDSIGHT = ("best_single", "max_expert")


def _paired_cell(value: float, diff: dict | None, scale: float, fmt: str, dfmt: str) -> str:
  """'0.8300; +0.0100 [+0.0020, +0.0180] win' (no difference for the reference)."""
  if diff is None:
    return f"{scale * value:{fmt}}"
  mark = {"win": " **better**", "loss": " **worse**", "tie": ""}[diff["verdict"]]
  lo, hi = scale * diff["low"], scale * diff["high"]
  return f"{scale * value:{fmt}}; {scale * diff['diff']:{dfmt}} [{lo:{dfmt}}, {hi:{dfmt}}]{mark}"


def paired_table(datasets: list[str], kinds: list[str], preds_dir: str,
                 n_resamples: int = 2000, seed: int = 0) -> str:
  """Markdown: each kind's test figures (mean over its seeds' prediction files)
  and its paired difference from the first kind with a 95% bootstrap interval
  over test queries (evaluation/paired.py); 'better'/'worse' only where the
  interval excludes 0. `best_single` and `max_expert` (prediction files written
  by compare_kinds) are compared on routing only; kinds without files are listed."""
  from irt_jax.evaluation import paired
  head = ["dataset", "kind", "seeds"] + [c for c, *_ in PAIRED_COLUMNS]
  lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for dataset in datasets:
    ref_name = kinds[0]
    ref = [paired.load(p) for p in paired.files_for(preds_dir, dataset, ref_name)]
    for name in list(kinds) + list(HINDSIGHT):
      runs = [paired.load(p) for p in paired.files_for(preds_dir, dataset, name)]
      if not runs or not ref:
        lines.append(f"| {dataset} | {name} | 0 | no predictions" + " |" * len(PAIRED_COLUMNS))
        continue
      n = len(runs[0].success)
      own = {k: float(np.mean([paired.statistics(r, np.ones((1, n)))[k][0] for r in runs]))
             for k in paired.STATISTICS}
      diffs = None if name == ref_name else paired.compare(ref, runs, n_resamples, seed)
      cells = []
      for col, scale, fmt, dfmt in PAIRED_COLUMNS:
        if name in HINDSIGHT and not col.startswith("routing"):
          cells.append("")
          continue
        cells.append(_paired_cell(own[col], diffs and diffs[col], scale, fmt, dfmt))
      label = field_metrics.baseline_label(name)
      lines.append(f"| {dataset} | {label} | {len(runs)} | " + " | ".join(cells) + " |")
  note = (f"Each kind against `{kinds[0]}` on the same test queries: value; difference "
          f"[95% paired bootstrap interval, {n_resamples} resamples of queries, seed {seed}]; "
          "**better** / **worse** only where the interval excludes 0 (log loss: lower is "
          "better). Several seeds: the mean over seeds on each resample.")
  return note + "\n\n" + "\n".join(lines) + "\n"
