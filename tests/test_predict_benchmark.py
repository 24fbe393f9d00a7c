"""`irt-jax predict-benchmark predict`: a new benchmark's score per LLM, zero-shot or from
labels, with the estimator the grid's records choose at that k and an interval
from their MAE; the anchors to label; bad input in one line."""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from irt_jax.benchmarks import predict
from tests.conftest import REPO

HALF = 1.959963984540054 * math.sqrt(math.pi / 2)  # interval half-width per unit of MAE


def _record(protocol, choice, estimator, k, mae, dataset="d", kind="irtnet"):
  m = {"mean": mae, "std": 0.01, "per_draw": [mae]}
  return {"dataset": dataset, "kind": kind, "protocol": protocol, "choice": choice,
          "estimator": estimator, "k": k, "mae": m, "bias": m, "spearman": m, "kendall": m}


def _write(path, lines):
  path.write_text("".join(line + "\n" for line in lines))
  return str(path)


# ----------------------------------------------------------------------------
# Reading the user's files.

@pytest.mark.parametrize("lines, message", [
    (['{"id": "a", "text": "x"', ], ":1: not a JSON object"),
    (['{"id": "a", "text": "x", "embedding": [1]}'], ':1: give exactly one of "text"'),
    (['{"id": "a", "text": "x"}', '{"id": "a", "text": "y"}'], "query id 'a' appears twice"),
    (['{"id": "a", "text": "x"}', '{"id": "b", "embedding": [1.0]}'], "mixes"),
    (['{"id": "a", "embedding": [1.0, 2.0]}', '{"id": "b", "embedding": [1.0]}'], "one length"),
    ([], "no queries"),
])
def test_bad_queries_are_one_line_errors(tmp_path, lines, message):
  with pytest.raises(predict.PredictError, match=message) as e:
    predict.read_queries(_write(tmp_path / "q.jsonl", lines))
  assert "\n" not in str(e.value) and "q.jsonl" in str(e.value)


def test_queries_and_labels_are_read_into_the_run_layout(tmp_path):
  q = predict.read_queries(_write(tmp_path / "q.jsonl", [
      '{"id": "a", "embedding": [1, 2]}', '', '{"embedding": [3, 4]}']))
  assert q.ids == ["a", "3"] and q.texts is None  # no id: the line number
  np.testing.assert_array_equal(q.embeddings, [[1, 2], [3, 4]])
  labels = predict.read_labels(_write(tmp_path / "l.csv", [
      "query_id,model,correct", "a,m2,1", "3,m1,0", "a,m2,1"]), q.ids, ["m1", "m2"])
  np.testing.assert_array_equal(labels, [[-1, 1], [0, -1]])


@pytest.mark.parametrize("rows, message", [
    (["query,model,correct"], r"missing \['query_id'\]"),
    (["query_id,model,correct", "zz,m1,1"], ":2: query_id 'zz' is not in the queries"),
    (["query_id,model,correct", "a,m9,1"], ":2: model 'm9' is not an LLM of the run"),
    (["query_id,model,correct", "a,m1,0.5"], ":2: correct must be 0 or 1"),
    (["query_id,model,correct", "a,m1,1", "a,m1,0"], ":3: .* labelled twice, differently"),
])
def test_bad_labels_are_one_line_errors(tmp_path, rows, message):
  with pytest.raises(predict.PredictError, match=message):
    predict.read_labels(_write(tmp_path / "l.csv", rows), ["a"], ["m1", "m2"])


# ----------------------------------------------------------------------------
# Choosing the estimator and the interval from the records.

def test_the_estimator_is_the_records_best_at_the_largest_k_not_above():
  records = [_record("shared", "random", "naive", 10, 0.10), _record("shared", "random", "irt", 10, 0.06),
             _record("shared", "random", "naive", 10, 0.10, dataset="e"),
             _record("shared", "random", "irt", 10, 0.16, dataset="e"),  # irt: 0.11 on average
             _record("shared", "random", "naive", 25, 0.05), _record("shared", "random", "irt", 25, 0.07),
             _record("per_llm", "random", "offset", 10, 0.01)]
  assert predict.choose(records, "shared", "random", 10) == ("naive", pytest.approx(0.10), 10)
  assert predict.choose(records, "shared", "random", 24) == ("naive", pytest.approx(0.10), 10)
  assert predict.choose(records, "shared", "random", 99) == ("naive", pytest.approx(0.05), 25)
  assert predict.choose(records, "shared", "random", 3)[2] == 10  # below the records: the smallest
  assert predict.choose(records, "per_llm", "random", 10) == ("offset", 0.01, 10)
  assert predict.choose(records, "shared", "anchors_items", 10) == (predict.FALLBACK_ESTIMATOR,
                                                                    None, None)
  # the run's kind's records win where there are any
  other = records + [_record("shared", "random", "diff", 10, 0.02, kind="knn")]
  assert predict.choose(other, "shared", "random", 10, kind="knn")[0] == "diff"
  assert predict.choose(other, "shared", "random", 10, kind="irtnet")[0] == "naive"
  assert predict.half_width(0.1) == pytest.approx(0.1 * HALF) == pytest.approx(0.2457, abs=1e-4)


def _arrays(n):
  return {"a_sq": np.ones(n)}  # a kind without an item-response view


def test_zero_shot_is_the_mean_predicted_p_with_the_results_interval():
  logits = np.log(np.array([[3.0, 1 / 3], [3.0, 1.0]]))  # P: (0.75, 0.25), (0.75, 0.5)
  rows = predict.predict(logits, _arrays(2), np.full((2, 2), -1, np.int8), [], 0.1)
  assert [r["score"] for r in rows] == [pytest.approx(0.75), pytest.approx(0.375)]
  assert rows[0]["low"] == pytest.approx(0.75 - 0.1 * HALF)
  assert rows[0]["high"] == pytest.approx(min(1.0, 0.75 + 0.1 * HALF))
  assert rows[1]["low"] == pytest.approx(0.375 - 0.1 * HALF) and rows[1]["k"] == 0
  assert predict.predict(logits, _arrays(2), np.full((2, 2), -1, np.int8), [], None)[0]["low"] is None


def test_labels_use_the_chosen_estimator_and_only_the_labelled_answers():
  rng = np.random.default_rng(0)
  n, m = 40, 3
  logits = rng.normal(size=(n, m))
  labels = np.full((n, m), -1, np.int8)
  labels[:8] = rng.integers(0, 2, size=(8, m))        # one shared set of 8 queries
  labels[:, 2] = rng.integers(0, 2, size=n)           # ... and LLM 2 answered everything
  records = [_record("per_llm", "random", "naive", 5, 0.02),
             _record("per_llm", "random", "irt", 5, 0.08)]
  rows = predict.predict(logits, _arrays(n), labels, records, None)
  for j in (0, 1):  # per-LLM sets differ (LLM 2 has all): the per_llm records, naive best
    assert rows[j]["estimator"] == "per_llm/random/naive" and rows[j]["k"] == 8
    assert rows[j]["score"] == pytest.approx(labels[:8, j].mean())
    assert rows[j]["low"] == pytest.approx(max(0.0, labels[:8, j].mean() - 0.02 * HALF))
  assert rows[2]["score"] == pytest.approx(labels[:, 2].mean()) and rows[2]["grid_k"] == 5
  only_irt = [_record("shared", "random", "irt", 5, 0.08)]
  shared = np.full((n, m), -1, np.int8)
  shared[:8] = labels[:8]
  a = predict.predict(logits, _arrays(n), shared, only_irt, None)
  assert a[0]["estimator"] == "shared/random/irt"
  assert 0 < a[0]["score"] < 1 and a[0]["score"] != pytest.approx(shared[:8, 0].mean())


def test_the_estimators_read_no_label_outside_the_labelled_cells():
  """predict stands in a value for the answers nobody labelled: every estimator
  must give the same scores whatever that value is."""
  from irt_jax.benchmarks import grid
  rng = np.random.default_rng(3)
  n, m = 30, 4
  logits = rng.normal(size=(n, m))
  labelled = np.zeros((n, m), bool)
  labelled[rng.choice(n, 6, replace=False)] = True
  weights = np.where(labelled, 1 / 6, 0.0)
  y = rng.integers(0, 2, size=(n, m))
  embeddings = rng.normal(size=(n, 5))  # the kernel estimator spreads residuals over them
  out = []
  for fill in (0, 1):
    pred = {"logits": logits, "labels": np.where(labelled, y, fill).astype(np.int8),
            "a_sq": np.ones(n)}
    bench = grid.bench_from_predictions(pred, embeddings)
    out.append(grid.estimates(bench, labelled, weights, grid.Priors(), shared=True,
                              rng=np.random.default_rng(0)))
  for name in grid.ESTIMATORS:
    np.testing.assert_allclose(out[0][name], out[1][name], err_msg=name)


def test_labels_of_the_proposed_anchors_are_read_as_that_design():
  # three well-separated groups of queries (5, 3 and 2 of 10) in the logits
  centres = np.array([[-4.0, -4.0], [0.0, 4.0], [4.0, -4.0]])
  logits = np.repeat(centres, [5, 3, 2], axis=0) + np.random.default_rng(1).normal(
      scale=0.05, size=(10, 2))
  idx, w = predict.propose(logits, 3)
  groups = np.repeat([0, 1, 2], [5, 3, 2])
  assert sorted(groups[idx].tolist()) == [0, 1, 2]  # one anchor per group
  assert dict(zip(groups[idx].tolist(), w.tolist())) == {0: 0.5, 1: 0.3, 2: 0.2}
  labels = np.full((10, 2), -1, np.int8)
  labels[idx] = [[1, 0]] * 3
  labels[idx[groups[idx] == 0]] = [0, 1]  # the 5-query group's anchor: LLM 0 wrong, LLM 1 right
  protocol, choice, weights, _ = predict.design(labels, logits)
  assert (protocol, choice) == ("shared", "anchors_items")
  records = [_record("shared", "anchors_items", "naive", 3, 0.05)]
  rows = predict.predict(logits, _arrays(10), labels, records, None)
  assert rows[0]["estimator"] == "shared/anchors_items/naive"
  assert rows[0]["score"] == pytest.approx(0.5) and rows[1]["score"] == pytest.approx(0.5)
  labels[idx[groups[idx] == 2]] = [0, 0]  # LLM 0 now right only on the 3-query group
  rows = predict.predict(logits, _arrays(10), labels, records, None)
  assert rows[0]["score"] == pytest.approx(0.3) and rows[1]["score"] == pytest.approx(0.5)
  with pytest.raises(predict.PredictError, match="--propose=11"):
    predict.propose(logits, 11)


# ----------------------------------------------------------------------------
# The command on a tiny trained run.

@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
  from configs import test as test_config
  from irt_jax import training
  config = test_config.get_config()
  config.train.num_epochs = 1
  workdir = str(tmp_path_factory.mktemp("run"))
  training.run(config, workdir)
  return workdir


def _cli(*args):
  return subprocess.run([sys.executable, "-m", "irt_jax", "predict-benchmark", "predict", *args],
                        capture_output=True, text=True, cwd=REPO)


@pytest.mark.slow
def test_the_command_predicts_proposes_and_refuses_bad_input(run_dir, tmp_path):
  rng = np.random.default_rng(0)
  queries = _write(tmp_path / "new.jsonl", [json.dumps({"id": f"q{i}", "embedding": v.tolist()})
                                            for i, v in enumerate(rng.normal(size=(12, 32)))])
  out = _cli(f"--workdir={run_dir}", f"--queries={queries}", "--propose=3")
  assert out.returncode == 0, out.stderr
  proposed = [line.split("|")[1].strip() for line in out.stdout.splitlines()[2:]]
  assert len(proposed) == 3 and set(proposed) <= {f"q{i}" for i in range(12)}
  out = _cli(f"--workdir={run_dir}", f"--queries={queries}")
  lines = out.stdout.splitlines()
  assert out.returncode == 0 and lines[0].startswith("| LLM | labels |") and len(lines) >= 14
  assert all("| 0 | zero_shot |" in line for line in lines[2:14])
  labels = _write(tmp_path / "answers.csv", ["query_id,model,correct"] + [
      f"{q},{lines[2].split('|')[1].strip()},1" for q in proposed])
  out = _cli(f"--workdir={run_dir}", f"--queries={queries}", f"--labels={labels}")
  assert out.returncode == 0, out.stderr
  row = out.stdout.splitlines()[2].split("|")
  assert row[2].strip() == "3" and row[3].strip().startswith("per_llm/random/")
  bad = _cli(f"--workdir={run_dir}", f"--queries={tmp_path / 'absent.jsonl'}")
  assert bad.returncode == 1 and bad.stdout == ""
  assert bad.stderr.strip().splitlines()[-1].startswith("predict-benchmark predict: ")
  assert "absent.jsonl: cannot read the queries" in bad.stderr
  wide = _write(tmp_path / "wide.jsonl", ['{"id": "a", "embedding": [1, 2, 3]}'])
  bad = _cli(f"--workdir={run_dir}", f"--queries={wide}")
  assert bad.returncode == 1 and "3-d but the run reads 32-d" in bad.stderr.splitlines()[-1]
