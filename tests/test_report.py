"""The kinds table of docs/results.md, from records by hand (report.kinds_table)."""

import json
import subprocess
import sys

import pytest

from irt_jax.evaluation import report
from tests.conftest import REPO

BASE = {"oracle": {"micro": 0.9, "macro": 0.8}, "best_single": {"micro": 0.6, "macro": 0.5},
        "random": {"micro": 0.4, "macro": 0.3}}


def _record(kind, dataset, seed, acc, auc, seconds):
  return {"kind": kind, "dataset": dataset, "seed": seed, "seconds": seconds, "baselines": BASE,
          "accuracy": acc, "auc": auc, "routing_micro": acc - 0.1, "routing_macro": acc - 0.2}


def test_kinds_table_mean_and_population_std_over_the_seeds_that_ran():
  records = [
      _record("irtnet_blocks", "a", 1, 0.70, 0.80, 30.0),  # another comparison's record
      _record("irtnet", "a", 2, 0.64, 0.71, 10.0),        # seeds out of order, unequal counts
      _record("irtnet", "a", 0, 0.60, 0.70, 20.0),
      _record("logreg", "b", 0, 0.50, 0.55, 5.0),
  ]
  lines = report.kinds_table(records, ["a", "b"], ["irtnet", "logreg"]).splitlines()
  rows = [l for l in lines if l.startswith("| a ") or l.startswith("| b ")]
  # accuracy 60 and 64: mean 62, population std 2 (the sample std would be 2.83);
  # AUC 0.70 and 0.71: 0.7050 +- 0.0050; routing micro 50 and 54; train seconds 15.
  assert rows[0] == ("| a | irtnet | 2 | 62.00 +- 2.00 | 0.7050 +- 0.0050 | 52.00 +- 2.00 | "
                     "42.00 +- 2.00 | 15 |")
  assert rows[1] == "| a | logreg | 0 | not run | | | | |"
  assert rows[2:5] == ["| a | *oracle* | | | | 90.00 | 80.00 | |",
                       "| a | *best_single* | | | | 60.00 | 50.00 | |",
                       "| a | *random* | | | | 40.00 | 30.00 | |"]
  assert rows[5] == "| b | irtnet | 0 | not run | | | | |"
  assert rows[6] == "| b | logreg | 1 | 50.00 | 0.5500 | 40.00 | 30.00 | 5 |"
  assert len(rows) == 10  # irtnet_blocks was not asked for
  lines = report.kinds_table(records, ["a"], ["irtnet_blocks", "irtnet"]).splitlines()
  assert [l.split(" | ")[1] for l in lines[2:4]] == ["irtnet_blocks", "irtnet"]
  assert lines[2] == "| a | irtnet_blocks | 1 | 70.00 | 0.8000 | 60.00 | 50.00 | 30 |"


def _table_only(records, tmp_path):
  return subprocess.run([sys.executable, "-m", "experiments.compare_kinds", "--table_only",
                         f"--records={records}", f"--workdir={tmp_path / 'w'}"],
                        cwd=REPO, capture_output=True, text=True, timeout=120)


def test_compare_kinds_table_only_without_records_is_one_line_not_a_traceback(tmp_path):
  missing = tmp_path / "none.jsonl"
  proc = _table_only(missing, tmp_path)
  assert proc.returncode != 0
  assert proc.stderr.strip().splitlines()[-1] == (
      f"compare_kinds.py: no records at {missing}: run without --table_only first")
  assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_compare_kinds_names_the_line_of_a_half_written_record(tmp_path):
  # A run killed while appending leaves a partial last line; every later
  # comparison must say where, not fail with a JSON traceback.
  records = tmp_path / "kinds.jsonl"
  whole = json.dumps(_record("irtnet", "routerdc", 0, 0.6, 0.7, 10.0))
  records.write_text(whole + "\n" + whole[:40] + "\n")
  proc = _table_only(records, tmp_path)
  assert proc.returncode != 0
  assert "Traceback" not in proc.stderr
  assert proc.stderr.strip().splitlines()[-1].startswith(
      f"compare_kinds.py: {records}, line 2: not a run record")
  records.write_text(whole + "\n" + json.dumps({"kind": "irtnet", "dataset": "routerdc"}) + "\n")
  proc = _table_only(records, tmp_path)  # valid JSON, not a record: no seed, no metrics
  assert f"{records}, line 2: not a run record" in proc.stderr and "Traceback" not in proc.stderr
  records.write_text(whole + "\n")
  proc = _table_only(records, tmp_path)
  assert proc.returncode == 0 and "| routerdc | irtnet | 1 | 60.00 | 0.7000 |" in proc.stdout


@pytest.mark.slow
def test_a_bad_override_stops_both_scripts_before_any_run(tmp_path):
  # Checked up front: a typo in the last grid entry must not surface after hours of runs.
  proc = subprocess.run([sys.executable, "-m", "experiments.compare_kinds", "--kinds=logreg,irtnet",
                         "--datasets=llmrouter", "--overrides=train.batchng=pairs",
                         f"--records={tmp_path / 'r.jsonl'}", f"--workdir={tmp_path / 'w'}"],
                        cwd=REPO, capture_output=True, text=True, timeout=120)
  assert proc.returncode != 0 and "Traceback" not in proc.stderr
  assert proc.stderr.strip().splitlines()[-1].startswith(
      "compare_kinds.py: logreg: override 'train.batchng=pairs': no field 'train.batchng'; "
      "valid there: batching, eval_rows,")
  assert not (tmp_path / "r.jsonl").exists() and not list((tmp_path / "w").iterdir())
  proc = subprocess.run([sys.executable, "-m", "experiments.search_recommended", "--datasets=llmrouter",
                         "--grid=ok:optim.lr=1e-3", "--grid=typo:model.n_expert=8",
                         f"--out={tmp_path / 's' / 'r.jsonl'}"],
                        cwd=REPO, capture_output=True, text=True, timeout=120)
  assert proc.returncode != 0 and "Traceback" not in proc.stderr
  assert proc.stderr.strip().splitlines()[-1].startswith(
      "search_recommended.py: --grid typo: override 'model.n_expert=8': no field 'model.n_expert'")
  assert not (tmp_path / "s" / "r.jsonl").exists()
  proc = subprocess.run([sys.executable, "-m", "experiments.compare_kinds", "--kinds=nosuch",
                         f"--records={tmp_path / 'r.jsonl'}", f"--workdir={tmp_path / 'w'}"],
                        cwd=REPO, capture_output=True, text=True, timeout=120)
  assert proc.returncode != 0 and "Traceback" not in proc.stderr
  assert "compare_kinds.py: nosuch: unknown model kind or config" in proc.stderr.strip().splitlines()[-1]


def test_a_cell_recorded_with_other_overrides_is_kept_but_named(tmp_path):
  # Resuming with different overrides must neither re-run nor silently pass off
  # the old cell as the new setting.
  records = tmp_path / "kinds.jsonl"
  old = dict(_record("logreg", "llmrouter", 0, 0.75, 0.82, 20.0), overrides=["knn.k=5"])
  records.write_text(json.dumps(old) + "\n")
  (tmp_path / "data" / "llmrouter").mkdir(parents=True)   # the cell is recorded: nothing is read from it
  proc = subprocess.run([sys.executable, "-m", "experiments.compare_kinds", "--kinds=logreg",
                         "--datasets=llmrouter", f"--records={records}", f"--data_root={tmp_path / 'data'}",
                         f"--workdir={tmp_path / 'w'}"],
                        cwd=REPO, capture_output=True, text=True, timeout=120)
  assert proc.returncode == 0, proc.stderr
  assert ("logreg on llmrouter, seed 0: recorded with overrides ['knn.k=5'], not []; kept as "
          "finished") in proc.stderr
  assert records.read_text() == json.dumps(old) + "\n"
  assert "| llmrouter | logreg | 1 | 75.00 |" in proc.stdout


@pytest.mark.slow
def test_a_missing_or_broken_dataset_ends_both_scripts_in_one_line(tmp_path):
  (tmp_path / "broken").mkdir()  # a folder with no CSVs: the data loader's own error
  common = [f"--data_root={tmp_path}"]
  runs = {
      "missing": ["-m", "experiments.compare_kinds", "--kinds=knn", "--datasets=nosuch",
                  f"--records={tmp_path / 'r.jsonl'}", f"--workdir={tmp_path / 'w'}"],
      "broken": ["-m", "experiments.compare_kinds", "--kinds=knn", "--datasets=broken",
                 f"--records={tmp_path / 'r.jsonl'}", f"--workdir={tmp_path / 'w'}"],
      "search": ["-m", "experiments.search_recommended", "--datasets=nosuch", "--grid=a:optim.lr=1e-3",
                 f"--out={tmp_path / 's' / 'r.jsonl'}"],
  }
  last = {}
  for name, args in runs.items():
    proc = subprocess.run([sys.executable, *args, *common], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
    last[name] = proc.stderr.strip().splitlines()[-1]
  assert last["missing"] == (f"compare_kinds.py: no dataset folder {tmp_path / 'nosuch'} "
                             "(see --data_root and --datasets)")
  assert last["broken"].startswith(
      f"compare_kinds.py: knn on broken, seed 0: {tmp_path / 'broken'}")
  assert "file not found" in last["broken"]
  assert last["search"].startswith(
      f"search_recommended.py: no dataset folder {tmp_path / 'nosuch'}")
  assert not (tmp_path / "r.jsonl").exists()


def test_the_search_names_the_line_of_a_half_written_record(tmp_path):
  out = tmp_path / "s" / "results.jsonl"
  out.parent.mkdir()
  whole = json.dumps({"name": "a", "dataset": "llmrouter", "seed": 0, "val_auc": 0.8})
  out.write_text(whole + "\n" + whole[:25] + "\n")
  proc = subprocess.run([sys.executable, "-m", "experiments.search_recommended", "--datasets=llmrouter",
                         "--grid=a:optim.lr=1e-3", f"--out={out}"],
                        cwd=REPO, capture_output=True, text=True, timeout=120)
  assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
  assert proc.stderr.strip().splitlines()[-1].startswith(
      f"search_recommended.py: {out}, line 2: not a run record")


def test_paired_table_marks_only_differences_whose_interval_excludes_zero(tmp_path):
  import numpy as np
  from irt_jax.evaluation import paired
  rng = np.random.default_rng(0)
  truth = rng.normal(size=(300, 4))
  labels = (rng.random(truth.shape) < 1 / (1 + np.exp(-truth))).astype(np.int8)
  bench = rng.integers(0, 2, 300)
  noisy = lambda scale: truth + rng.normal(scale=scale, size=truth.shape)
  for name, logits in [("ref-s0", noisy(3.0)), ("ref-s1", noisy(3.0)), ("good-s0", noisy(0.3)),
                       ("best_single-s0", np.broadcast_to(np.arange(4.0), truth.shape))]:
    paired.save(str(tmp_path / "d" / f"{name}.npz"), logits, labels, bench)
  text = report.paired_table(["d"], ["ref", "good", "absent"], str(tmp_path), n_resamples=300)
  rows = {l.split(" | ")[1]: l for l in text.splitlines() if l.startswith("| d |")}
  assert rows["ref"].startswith("| d | ref | 2 |") and "[" not in rows["ref"]
  good = rows["good"].split(" | ")
  assert all("**better**" in cell for cell in good[3:7]), good  # far less noise: every figure
  assert rows["absent"] == "| d | absent | 0 | no predictions | | | |"
  single = rows["best_single"].split(" | ")
  assert single[3] == single[4] == "" and "[" in single[5]  # routing only


def _search_entry(root, name, dataset, seconds, logits, labels, bench):
  from irt_jax.evaluation import paired
  paired.save(str(root / "preds_val" / dataset / f"{name}-s0.npz"), logits, labels, bench)
  return {"name": name, "dataset": dataset, "seed": 0, "seconds": seconds,
          "batch_cells": 2048 if name == "net" else None}


def test_recipe_eligibility_counts_every_members_seconds_and_times_can_replace_them(tmp_path):
  # The 5-minute rule is for the whole recipe: an ensemble of two members each under
  # the limit is over it when their seconds add up past it (the IrtNet alone is not);
  # --times re-reads every member's seconds from a timing re-run under one load.
  import numpy as np
  rng = np.random.default_rng(0)
  truth = rng.normal(size=(200, 3))
  labels = (rng.random(truth.shape) < 1 / (1 + np.exp(-truth))).astype(np.int8)
  bench = rng.integers(0, 2, 200)
  search, times = [], []
  for d in ("d1", "d2"):
    for name, seconds, timed in (("net", 60.0, 20.0), ("reg", 50.0, 5.0)):
      logits = truth + rng.normal(scale=1.0, size=truth.shape)
      search.append(_search_entry(tmp_path, name, d, seconds, logits, labels, bench))
      times.append(dict(search[-1], seconds=timed))
  (tmp_path / "search.jsonl").write_text("".join(json.dumps(r) + "\n" for r in search))
  (tmp_path / "times.jsonl").write_text("".join(json.dumps(r) + "\n" for r in times[:-1]))
  def run(*extra):
    return subprocess.run(
        [sys.executable, "-m", "experiments.recipe_ensembles", f"--records={tmp_path / 'search.jsonl'}",
         f"--preds_dir={tmp_path / 'preds_val'}", f"--out={tmp_path / 'scored.jsonl'}",
         "--ensembles=net+reg", "--max_seconds=100", *extra],
        cwd=REPO, capture_output=True, text=True, timeout=120)
  proc = run()
  assert proc.returncode == 0, proc.stderr
  rows = {l.split(" | ")[1]: l for l in proc.stdout.splitlines() if l.startswith("| ")}
  assert "net+reg (over 5 min)" in rows and rows["net+reg (over 5 min)"].endswith(" | 110 |")
  assert "net" in rows and rows["reg"].endswith(" | 50 |")
  proc = run(f"--times={tmp_path / 'times.jsonl'}")  # reg on d2 was not timed
  assert proc.returncode != 0 and "Traceback" not in proc.stderr
  last = proc.stderr.strip().splitlines()[-1]
  assert last in ("recipe_ensembles.py: net+reg: a member has no timing on d2 in --times",
                  "recipe_ensembles.py: reg: a member has no timing on d2 in --times"), last
  (tmp_path / "times.jsonl").write_text("".join(json.dumps(r) + "\n" for r in times))
  proc = run(f"--times={tmp_path / 'times.jsonl'}")
  assert proc.returncode == 0, proc.stderr
  rows = {l.split(" | ")[1]: l for l in proc.stdout.splitlines() if l.startswith("| ")}
  assert rows["net+reg"].endswith(" | 25 |") and "over" not in proc.stdout
  scored = [json.loads(l) for l in (tmp_path / "scored.jsonl").read_text().splitlines()]
  assert {(r["name"], r["dataset"]): r["train_seconds"] for r in scored}[("net+reg", "d1")] == 25.0
