"""Benchmark-score prediction grid: estimators on hand-solvable cases, query choices,
the shared and per-LLM protocols, the records' tables, and the entry point's new flags."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from irt_jax.benchmarks import grid
from irt_jax.benchmarks import grid_estimators
from irt_jax.benchmarks import grid_tables
from irt_jax.benchmarks import held_out
from irt_jax.benchmarks import query_choice
from irt_jax.benchmarks import scores
from tests.conftest import REPO

LOOSE = grid.Priors(per_llm_sd=1e3, shared_sd=1e3, scale_sd=1e3)


def _bench(term, labels, difficulty=None, embeddings=None):
  term = np.asarray(term, np.float64)
  difficulty = np.zeros(len(term)) if difficulty is None else np.asarray(difficulty, np.float64)
  return grid.Bench(logits=term - difficulty[:, None], labels=np.asarray(labels, np.int8),
                    ability_term=term, difficulty=difficulty, a_sq=np.ones(len(term)),
                    embeddings=embeddings)


# Two LLMs, three items: LLM 0 has a . theta = +1 on every item and answers 2 of 3,
# LLM 1 has -1 and answers 1 of 3 (b = 0).
TERM = np.array([[1.0, -1.0]] * 3)
LABELS = np.array([[1, 0], [1, 1], [0, 0]])
ALL = np.ones((3, 2), bool)


def test_item_side_fit_solves_the_two_llm_three_item_case():
  # logit = s * (+-1) + c: the MAP with flat priors matches each LLM's share,
  # s - (-s) symmetric: s = logit(2/3) = log 2 and c = 0.
  s, c, delta = held_out.fit_item_side(_bench(TERM, LABELS), LABELS.astype(float), ALL, LOOSE,
                                   per_llm=False)
  assert s == pytest.approx(np.log(2), abs=1e-4)
  assert c == pytest.approx(0.0, abs=1e-4)
  assert np.all(delta == 0)


def test_item_side_fit_with_per_llm_offsets_matches_the_one_dimensional_map():
  # No ability term, s pinned at 1, c free: the per-LLM offsets under N(0, 1) each
  # solve their own 1-D MAP (c = 0 by symmetry), which fit_offset solves independently.
  priors = grid.Priors(per_llm_sd=1.0, shared_sd=1e3, scale_sd=1e-4)
  zero = np.zeros((3, 2))
  s, c, delta = held_out.fit_item_side(_bench(zero, LABELS), LABELS.astype(float), ALL, priors,
                                   per_llm=True)
  expected = scores.fit_offset(np.zeros(3), [1, 1, 0], prior_sd=1.0)
  assert s == pytest.approx(1.0, abs=1e-3) and c == pytest.approx(0.0, abs=1e-3)
  assert delta == pytest.approx([expected, -expected], abs=1e-3)
  assert 0 < expected < np.log(2)  # shrunk towards 0 from the flat-prior answer


def test_estimates_keep_the_observed_labels_and_predict_the_rest():
  # Item 0 labelled for both LLMs; the rest predicted by the refitted item side.
  bench = _bench(TERM, LABELS)
  labelled = np.array([[True, True], [False, False], [False, False]])
  weights = np.where(labelled, 1.0, 0.0)
  est = held_out.estimates(bench, labelled, weights, grid.Priors())
  assert est["naive"] == pytest.approx([1.0, 0.0])
  y = LABELS.astype(float)
  s, c, delta = held_out.fit_item_side(bench, y, labelled, grid.Priors(), per_llm=True)
  p = 1 / (1 + np.exp(-(s * TERM + c + delta)))
  assert est["irt"] == pytest.approx((y[0] + p[1:].sum(0)) / 3)
  # No LLM labelled at all: NaN, not the model alone.
  none = held_out.estimates(bench, np.zeros((3, 2), bool), np.zeros((3, 2)), grid.Priors())
  assert all(np.isnan(v).all() for v in none.values())


def test_gp_blend_weighs_labels_by_the_models_spread_beyond_sampling_noise():
  # p = 0.5 everywhere, two labels per LLM of weight 1/2: v = 2 * 0.25 * 0.25 = 0.125.
  # Label means 1 and 0: residuals +-0.5, mean square 0.25, b^2 = 0.25 - 0.125 = 0.125,
  # so lambda = 0.125 / (0.125 + 0.125) = 1/2.
  labelled = np.array([[True, True], [True, True], [False, False]])
  weights = np.full((3, 2), 0.5)
  p = np.full((3, 2), 0.5)
  naive = np.array([1.0, 0.0])
  p_irt = np.array([0.6, 0.4])
  assert held_out.gp_blend(naive, p_irt, p, labelled, weights) == pytest.approx([0.8, 0.2])
  # A model that matches the labels within sampling noise is trusted (lambda small).
  near = held_out.gp_blend(np.array([0.5, 0.5]), p_irt, p, labelled, weights)
  lam = held_out.GP_FLOOR / (held_out.GP_FLOOR + 0.125)
  assert near == pytest.approx(lam * 0.5 + (1 - lam) * p_irt)


def test_weighted_mean_is_the_plain_mean_for_uniform_weights():
  y = np.array([[1.0, 0.0], [0.0, 0.0], [1.0, 1.0], [1.0, 0.0]])
  labelled = np.array([[True, True], [True, True], [True, False], [False, True]])
  assert held_out.weighted_mean(y, labelled, np.full((4, 2), 0.25)) == pytest.approx([2 / 3, 0.0])
  w = np.array([[0.5] * 2, [0.25] * 2, [0.25] * 2, [0.0] * 2])
  assert held_out.weighted_mean(y, labelled, w) == pytest.approx([0.75, 0.0])


# ----------------------------------------------------------------------------
# Query choices and protocols.

def test_stratified_pick_covers_the_difficulty_range():
  rng = np.random.default_rng(0)
  difficulty = np.random.default_rng(1).permutation(100).astype(float)
  for _ in range(20):
    picks, w, _ = query_choice.stratified_pick(difficulty, 4, rng)
    assert sorted(difficulty[picks] // 25) == [0, 1, 2, 3]  # one from each quarter
    assert w == pytest.approx([0.25] * 4)


def test_anchor_pick_takes_the_point_nearest_each_centroid_weighted_by_cluster_size():
  rng = np.random.default_rng(0)
  centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
  sizes = [6, 3, 1]
  x = np.concatenate([c + 0.1 * rng.normal(size=(n, 2)) for c, n in zip(centres, sizes)])
  picks, w, groups = query_choice.anchor_pick(x, 3, seed=0)
  assert len(picks) == 3 and w.sum() == pytest.approx(1.0)
  cluster = lambda i: int(np.argmin(((centres - x[i]) ** 2).sum(1)))
  assert sorted(cluster(i) for i in picks) == [0, 1, 2]
  assert {cluster(i): wi for i, wi in zip(picks, w)} == {0: 0.6, 1: 0.3, 2: 0.1}
  for i in picks:  # each pick is its cluster's member nearest the cluster mean
    members = [j for j in range(len(x)) if cluster(j) == cluster(i)]
    mean = x[members].mean(0)
    assert i == members[int(np.argmin(((x[members] - mean) ** 2).sum(1)))]
    assert set(np.flatnonzero(groups == groups[i])) == set(members)  # its group is its cluster


def test_stratified_pick_is_uniform_within_each_stratum_and_independent_across_strata():
  # 12 queries, 3 strata of 4: over many draws every member of a stratum is picked
  # 1/4 of the time and the picks of two strata are independent (each pair 1/16),
  # although they are drawn through a random pick of the same generator.
  difficulty = np.arange(12.0)
  rng = np.random.default_rng(0)
  picks = np.array([query_choice.stratified_pick(difficulty, 3, rng)[0] for _ in range(20000)])
  assert sorted(picks[0] // 4) == [0, 1, 2]
  for h in range(3):
    freq = np.bincount(picks[:, h] - 4 * h, minlength=4) / len(picks)
    assert np.abs(freq - 0.25).max() < 0.015, (h, freq)
  joint = np.bincount(4 * picks[:, 0] + (picks[:, 1] - 4), minlength=16) / len(picks)
  assert np.abs(joint - 1 / 16).max() < 0.01
  _, w, groups = query_choice.stratified_pick(np.arange(10.0), 3, rng)
  assert groups.tolist() == [0] * 4 + [1] * 3 + [2] * 3 and w.tolist() == [0.4, 0.3, 0.3]


def test_stratified_and_random_picks_from_one_generator_state_share_most_queries():
  # Common random numbers: from the same state, stratified keeps every stratum's
  # share of the random pick, about k (1 - (1 - 1/k)^k) = 16 of 25 queries; two
  # independent draws of 25 of 1000 would share about 0.6.
  difficulty = np.random.default_rng(1).normal(size=1000)
  shared = []
  for seed in range(200):
    rand, _, _ = query_choice.random_pick(1000, 25, np.random.default_rng(seed))
    strat, _, _ = query_choice.stratified_pick(difficulty, 25, np.random.default_rng(seed))
    shared.append(len(set(rand) & set(strat)))
  assert 14.5 < np.mean(shared) < 17.5


def test_per_llm_random_and_stratified_designs_stay_coupled_llm_by_llm():
  # Each LLM draws from its own child generator, so stratified's extra draws for
  # one LLM do not shift the next LLM's random numbers.
  bench = _dense_bench(n=200, m=5, emb=False)
  rand, _, _ = grid.per_llm_design(bench, "random", 10, np.random.default_rng(7))
  strat, w, groups = grid.per_llm_design(bench, "stratified", 10, np.random.default_rng(7))
  shared = (rand & strat).sum(0)
  assert shared.min() >= 3 and shared.mean() > 5, shared
  assert (groups >= 0).all() and all(len(set(groups[strat[:, m], m])) == 10 for m in range(5))
  assert w.sum(0) == pytest.approx([1.0] * 5)


def _dense_bench(n=60, m=4, seed=0, emb=True):
  rng = np.random.default_rng(seed)
  term = rng.normal(size=(n, m))
  labels = (rng.random((n, m)) < 1 / (1 + np.exp(-term))).astype(np.int8)
  return _bench(term, labels, embeddings=rng.normal(size=(n, 8)) if emb else None)


@pytest.mark.parametrize("choice", query_choice.SHARED_CHOICES)
def test_shared_protocol_gives_every_llm_the_same_queries(choice):
  bench = _dense_bench()
  bench.labels[::2, 1] = -1  # LLM 1 answered only the odd queries: its unknown cells stay unlabelled
  labelled, weights, _ = grid.shared_design(bench, choice, 10, np.random.default_rng(0), seed=0)
  rows = set(np.flatnonzero(labelled.any(axis=1)))
  assert len(rows) == 10 or (choice.startswith("anchors") and len(rows) <= 10)
  for m in (0, 2, 3):
    assert set(np.flatnonzero(labelled[:, m])) == rows
  assert set(np.flatnonzero(labelled[:, 1])) == {q for q in rows if q % 2}
  assert weights[sorted(rows), 0].sum() == pytest.approx(1.0)


def test_per_llm_protocol_gives_each_llm_its_own_k_known_queries():
  bench = _dense_bench(n=80)
  bench.labels[:75, 2] = -1  # LLM 2 answered 5 queries: not labelled at k = 10
  labelled, weights, _ = grid.per_llm_design(bench, "random", 10, np.random.default_rng(0))
  assert list(labelled.sum(0)) == [10, 10, 0, 10]
  assert len({tuple(np.flatnonzero(labelled[:, m])) for m in (0, 1, 3)}) == 3
  assert weights.sum(0) == pytest.approx([1, 1, 0, 1])
  assert not (labelled & (bench.labels < 0)).any()


def test_cells_refuse_unknown_or_impossible_choices():
  assert ("shared", "anchors_items") in grid.cells()
  assert ("per_llm", "adaptive") in grid.cells() and ("per_llm", "anchors_items") not in grid.cells()
  with pytest.raises(ValueError, match="unknown query choice"):
    grid.cells(choices=["clever"])
  with pytest.raises(ValueError, match="unknown label protocol"):
    grid.cells(protocols=["everyone"])
  with pytest.raises(ValueError, match="anchors: shared only"):
    grid.cells(protocols=["per_llm"], choices=["anchors_items"])


def test_grid_beats_the_naive_mean_when_the_model_is_right():
  # Labels drawn from the model's own probabilities with a benchmark-wide shift the
  # refit must learn: with k = 10 the model-based estimators are closer on average.
  rng = np.random.default_rng(3)
  n, m = 400, 8
  term = rng.normal(size=(n, 1)) + rng.normal(size=(1, m))
  labels = (rng.random((n, m)) < 1 / (1 + np.exp(-(term + 0.7)))).astype(np.int8)
  bench = _bench(term, labels, embeddings=rng.normal(size=(n, 4)))
  out = grid.benchmark_grid(bench, [10], draws=6, seed=0, choices=["random"])
  true = grid.true_scores(labels)
  mae = {key: np.nanmean(np.abs(v - true)) for key, v in out.items()}
  for protocol in grid.PROTOCOLS:
    naive = mae[(protocol, "random", 10, "naive")]
    assert mae[(protocol, "random", 10, "irt")] < 0.7 * naive
    assert mae[(protocol, "random", 10, "gp_irt")] < naive
  assert out[("shared", "random", 10, "irt")].shape == (6, m)


# ----------------------------------------------------------------------------
# Records -> tables.

def _record(dataset, protocol, choice, estimator, k, mae, std, rho=0.5, per_draw=None):
  m = lambda v, s, pd=None: {"mean": v, "std": s, "per_draw": pd or [v]}
  return {"dataset": dataset, "protocol": protocol, "choice": choice, "estimator": estimator,
          "k": k, "mae": m(mae, std, per_draw), "bias": m(0.01, 0.0), "spearman": m(rho, 0.1),
          "kendall": m(rho - 0.1, 0.1)}


def test_goals_table_names_the_best_row_and_its_paired_gap():
  records = [_record("d", "shared", "random", "naive", 10, 0.10, 0.01, rho=0.6),
             _record("d", "shared", "random", "irt", 10, 0.08, 0.01, rho=0.7),
             # stratified: irt is best; per draw its gap to the naive mean of the same
             # picks is 0.02, 0.05, -0.01: mean 0.02, std 0.03 -> not more than its spread.
             _record("d", "shared", "stratified", "irt", 10, 0.07, 0.01, rho=0.8,
                     per_draw=[0.06, 0.07, 0.08]),
             _record("d", "shared", "stratified", "naive", 10, 0.09, 0.01,
                     per_draw=[0.08, 0.12, 0.07])]
  line = grid_tables.benchmark_grid_goals(records).splitlines()[2]
  cells = [c.strip() for c in line.strip("|").split("|")]
  assert cells[:9] == ["d", "shared", "10", "10.00 ± 1.00", "stratified/irt", "7.00 ± 1.00",
                       "+3.00", "+2.00 ± 3.00", "no"]
  assert cells[9] == "stratified/irt: 7.00 vs 8.00 (+1.00)"
  assert cells[10] == "0.800 ± 0.100 / 0.600 ± 0.100"
  records[3]["mae"]["per_draw"] = [0.09, 0.10, 0.11]  # gaps 0.03 each: met
  cells = grid_tables.benchmark_grid_goals(records).splitlines()[2].split("|")
  assert cells[8].strip() == "+3.00 ± 0.00" and cells[9].strip() == "yes"
  table = grid_tables.benchmark_grid_table(records, "d", "bias").splitlines()
  assert table[2] == "| shared | random | naive | +1.00 ± 0.00 |"


# Three datasets, shared labels, k = 10 (MAE): random/irt is best on a and c and
# random/gp_irt on b, but averaged over the *other two* gp_irt wins for a and c and
# irt for b, so every held-out choice differs from the in-sample best (and, for a
# and c, from the choice of their first other dataset alone). anchors_items/irt ran
# on a and b only: lowest on both, it must not compete anywhere (c never ran it).
HELDOUT_MAE = {"a": {("random", "naive"): 0.10, ("random", "irt"): 0.05,
                     ("random", "gp_irt"): 0.07, ("stratified", "irt"): 0.06,
                     ("stratified", "gp_irt"): 0.065, ("anchors_items", "irt"): 0.01},
               "b": {("random", "naive"): 0.10, ("random", "irt"): 0.09,
                     ("random", "gp_irt"): 0.05, ("stratified", "irt"): 0.08,
                     ("stratified", "gp_irt"): 0.06, ("anchors_items", "irt"): 0.02},
               "c": {("random", "naive"): 0.10, ("random", "irt"): 0.06,
                     ("random", "gp_irt"): 0.07, ("stratified", "irt"): 0.08,
                     ("stratified", "gp_irt"): 0.062}}


def _heldout_records():
  records = [_record(d, "shared", c, e, 10, v, 0.01, rho=0.5)
             for d, rows in HELDOUT_MAE.items() for (c, e), v in rows.items()]
  for r in records:  # on a: random/gp_irt beats the naive mean of the same picks by 3 +- 1
    if r["dataset"] == "a" and r["choice"] == "random" and r["estimator"] != "irt":
      gp = r["estimator"] == "gp_irt"
      r["mae"]["per_draw"] = [0.07, 0.06, 0.08] if gp else [0.09, 0.10, 0.11]
      r["spearman"]["mean"] = 0.7 if gp else 0.6
  return records


def test_heldout_goals_choose_each_datasets_rows_on_the_other_datasets():
  rows = {line.split("|")[1].strip(): [c.strip() for c in line.strip("|").split("|")]
          for line in grid_tables.benchmark_grid_heldout_goals(_heldout_records()).splitlines()[2:]}
  assert sorted(rows) == ["a", "b", "c"]
  assert rows["a"] == ["a", "shared", "10", "10.00 ± 1.00", "random/gp_irt", "7.00 ± 1.00",
                       "+3.00 ± 1.00", "yes", "stratified/gp_irt: 6.50 vs 7.00 (+0.50)", "yes",
                       "0.700 ± 0.100 / 0.600 ± 0.100", "yes"]
  # b: irt (others 5.5 vs gp_irt 7.0); one draw each, so no paired spread: not met at k = 10.
  # Goal 2: stratified/gp_irt gains on a and c on average (+0.65) but loses 1 point on b.
  assert rows["b"][4:10] == ["random/irt", "9.00 ± 1.00", "n/a", "no",
                             "stratified/gp_irt: 6.00 vs 5.00 (-1.00)", "no"]
  assert rows["c"][4:6] == ["random/gp_irt", "7.00 ± 1.00"]
  # c: on a and b stratified gains 0 with irt, -0.25 with gp_irt; here gp_irt would gain.
  assert rows["c"][8:10] == ["stratified/irt: 8.00 vs 6.00 (-2.00)", "no"]
  # The optimistic table picks on the same figures.
  optimistic = grid_tables.benchmark_grid_goals(_heldout_records()).splitlines()[2:]
  assert [line.split("|")[5].strip() for line in optimistic] == [
      "anchors_items/irt", "anchors_items/irt", "random/irt"]


def test_heldout_goals_hold_out_only_datasets_of_the_same_kind():
  one_kind = [{**r, "kind": "irtnet"} for r in _heldout_records()]
  other = [{**r, "kind": "knn", "dataset": "a (knn)"} for r in _heldout_records()
           if r["dataset"] == "a"]
  table = grid_tables.benchmark_grid_heldout_goals(one_kind + other)
  assert table == grid_tables.benchmark_grid_heldout_goals(one_kind)  # a lone knn run: no row
  md = grid_tables.benchmark_grid_markdown(other, metrics=("mae",))
  assert "Needs the records of two or more datasets (of one kind): none here." in md
  assert "optimistic" in md and "| a (knn) | shared | 10 |" in md


@pytest.mark.slow
def test_entry_point_prints_tables_from_records_and_refuses_bad_flags(tmp_path):
  path = tmp_path / "r.jsonl"
  path.write_text("".join(json.dumps(_record("d", "shared", "random", e, k, 0.1, 0.01)) + "\n"
                          for e in ("naive", "irt") for k in (10, 25)))
  png = tmp_path / "mae.png"
  cmd = [sys.executable, "-m", "irt_jax", "predict-benchmark", f"--from_records={path}",
         f"--plot={png}"]
  proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "#### d: MAE (points)" in proc.stdout and "| shared | random | irt |" in proc.stdout
  assert os.path.getsize(png) > 5000
  path.write_text('{"dataset": "d"}\n')
  bad = subprocess.run(cmd[:5], cwd=REPO, capture_output=True, text=True, timeout=300)
  assert bad.returncode == 1 and "line 1: not a run record" in bad.stderr
  bad = subprocess.run([sys.executable, "-m", "irt_jax", "predict-benchmark",
                        "--workdir=" + str(tmp_path / "w"), "--selections=clever"],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
  assert bad.returncode == 1 and "unknown query choice(s) ['clever']" in bad.stderr.splitlines()[-1]
  assert "Traceback" not in bad.stderr


@pytest.mark.slow
def test_entry_point_runs_the_grid_with_the_new_flags_on_synthetic_data(tmp_path):
  workdir = tmp_path / "bp"
  cmd = [sys.executable, "-m", "irt_jax", "predict-benchmark", "--config=configs/test.py",
         f"--workdir={workdir}", "--config.train.num_epochs=1",
         "--config.data.synthetic.n_queries=300", "--config.data.synthetic.n_models=6",
         "--ks=5,10", "--random_repeats=2", "--benchmarks=bench1", "--noplots",
         "--protocol_labels=shared", "--selections=random,anchors_embeddings,adaptive"]
  proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stderr[-3000:]
  records = [json.loads(line) for line in open(workdir / "benchmark_grid.jsonl")]
  cells = {(r["protocol"], r["choice"], r["estimator"], r["k"]) for r in records}
  assert cells == {("shared", c, e, k) for c in ("random", "anchors_embeddings")
                   for e in grid.ESTIMATORS for k in (5, 10)}
  for r in records:
    assert r["dataset"] == "synthetic_data" and r["draws"] == 2 and len(r["mae"]["per_draw"]) == 2
    assert 0 <= r["mae"]["mean"] < 1 and r["n_benchmarks"] == 1
  # The grid is cached per held-out benchmark with its settings: a rerun reuses it.
  cache = workdir / "heldout" / "bench1" / "grid.json"
  mtime = os.path.getmtime(cache)
  again = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
  assert again.returncode == 0 and os.path.getmtime(cache) == mtime
  assert [json.loads(line) for line in open(workdir / "benchmark_grid.jsonl")] == records


def test_records_of_several_kinds_are_told_apart_by_run():
  one = [_record("d", "shared", "random", "naive", 10, 0.1, 0.0)]
  assert grid_tables.label_grid_runs(one) == one
  two = [{**one[0], "kind": "irtnet"}, {**one[0], "kind": "knn", "mae": {**one[0]["mae"], "mean": 0.2}}]
  labelled = grid_tables.label_grid_runs(two)
  assert [r["dataset"] for r in labelled] == ["d (irtnet)", "d (knn)"]
  assert "| shared | random | naive | 20.00 ± 0.00 |" in grid_tables.benchmark_grid_table(labelled, "d (knn)")


def test_prior_check_chooses_each_datasets_priors_on_the_other_datasets():
  mae = {("a", 0.5): 0.05, ("a", 1.0): 0.06, ("b", 0.5): 0.09, ("b", 1.0): 0.07,
         ("c", 0.5): 0.04, ("c", 1.0): 0.05, ("c", 2.0): 0.01}  # 2.0 not run on a, b: ignored
  records = [{"workdir": d, "per_llm_sd": sd, "scale_sd": 0.5, "mae": {"mean": v}}
             for (d, sd), v in mae.items()]
  rows = grid_tables.prior_check_table(records, (1.0, 0.5)).splitlines()[2:]
  # a: b and c average 0.065 at sd 0.5, 0.06 at 1.0 -> 1.0; b: a and c prefer 0.5; c: 0.07 vs 0.065 -> 1.0.
  assert rows[0] == "| a | (1.0, 0.5) | 6.00 | 6.00 | (0.5, 0.5): 5.00 |"
  assert rows[1] == "| b | (0.5, 0.5) | 9.00 | 7.00 | (1.0, 0.5): 7.00 |"
  assert rows[2] == "| c | (1.0, 0.5) | 5.00 | 5.00 | (0.5, 0.5): 4.00 |"


def test_bench_from_predictions_reads_the_item_side_or_falls_back_to_logits():
  rng = np.random.default_rng(0)
  a, theta, b = rng.normal(size=(5, 3)), rng.normal(size=(4, 3)), rng.normal(size=5)
  pred = {"logits": a @ theta.T - b[:, None], "labels": np.zeros((5, 4), np.int8),
          "a_sq": (a ** 2).sum(1), "item_a": a, "theta": theta, "item_b": b}
  bench = grid.bench_from_predictions(pred, embeddings=rng.normal(size=(5, 40)))
  np.testing.assert_allclose(bench.ability_term - bench.difficulty[:, None], pred["logits"])
  assert bench.embeddings.shape == (5, 5)  # centred principal components (at most n of them)
  # A kind without an item-response view (knn, logreg): its logit is the ability term, b = 0.
  plain = grid.bench_from_predictions({k: pred[k] for k in ("logits", "labels", "a_sq")})
  np.testing.assert_allclose(plain.ability_term, pred["logits"])
  assert not plain.difficulty.any() and plain.embeddings is None


# ----------------------------------------------------------------------------
# blend: inverse-variance weights (derivation in benchmarks.grid_estimators).



def test_naive_variance_is_the_finite_population_binomial_by_hand():
  # One LLM, 4 of n = 10 labelled at random (w = 1/4), labels 1, 1, 0, 0:
  # T~ = (2 + 1) / (4 + 2) = 1/2, S^2 = 1/4 * 10/9, FPC 1 - 4/10, sum w^2 = 1/4.
  y = np.array([[1.0], [1.0], [0.0], [0.0], [0.0]])
  labelled = np.array([[True]] * 4 + [[False]])
  v = grid_estimators.naive_variance(y, labelled, np.full((5, 1), 0.25), np.array([10]), shared=False)
  assert v == pytest.approx([0.6 * 0.25 * 0.25 * 10 / 9])
  # Every known query labelled: no sampling error left.
  assert grid_estimators.naive_variance(y, labelled, np.full((5, 1), 0.25), np.array([4]), False) == [0.0]


def test_naive_variance_under_shared_labels_uses_the_fleet_centred_labels_by_hand():
  # Two LLMs share 3 labelled queries of n = 6; labels (1, 0), (1, 1), (0, 0).
  # Fleet means 1/2, 1, 0, so LLM 0's centred labels are 1/2, 0, 0: mean 1/6, weighted
  # variance 1/18, x 3/2 = 1/12. T~ = (2 + 1)/5 = 3/5, binomial 0.24 * 6/5 = 0.288;
  # S^2 = (3 * 1/12 + 0.288) / 4; V = (1 - 3/6) * (1/3) * S^2.
  y = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0], [0.0, 0.0]])
  labelled = np.array([[True, True]] * 3 + [[False, False]])
  v = grid_estimators.naive_variance(y, labelled, np.full((4, 2), 1 / 3), np.array([6, 6]), shared=True)
  assert v[0] == pytest.approx(0.5 / 3 * (0.25 + 0.288) / 4)


def _fleet(n=3000, m=10, spread=3.0, seed=0):
  """Generated truth: items of widely varying difficulty, LLMs of close ability;
  a model whose logits carry a known per-LLM bias u_m."""
  rng = np.random.default_rng(seed)
  b = rng.normal(0, spread, n)
  theta = rng.normal(0, 0.5, m)
  y = (rng.random((n, m)) < 1 / (1 + np.exp(-(theta[None] - b[:, None])))).astype(float)
  u = rng.normal(0, 0.6, m)
  p_model = 1 / (1 + np.exp(-(theta[None] + u[None] - b[:, None])))
  return y, p_model


def test_shared_draw_variance_matches_the_relative_error_and_the_naive_binomial_does_not():
  # Under shared labels only the LLM's error relative to the fleet's can be traded
  # against the model: its simulated variance over many draws is what the shared
  # formula estimates; the LLM's own binomial variance (the shared draw forgotten)
  # counts the common difficulty luck too and is far larger.
  y, _ = _fleet()
  n, m = y.shape
  k, rng = 25, np.random.default_rng(1)
  rel_err, est_shared, est_plain = [], [], []
  for _ in range(400):
    labelled = np.zeros((n, m), bool)
    labelled[rng.choice(n, k, replace=False)] = True
    err = y[labelled[:, 0]].mean(0) - y.mean(0)
    rel_err.append(err - err.mean())
    w = np.full((n, m), 1 / k)
    est_shared.append(grid_estimators.naive_variance(y, labelled, w, np.full(m, n), shared=True))
    est_plain.append(grid_estimators.naive_variance(y, labelled, w, np.full(m, n), shared=False))
  truth = np.var(rel_err, axis=0).mean()
  assert np.mean(est_shared) == pytest.approx(truth, rel=0.2)
  assert np.mean(est_plain) > 1.5 * truth


def _bias_estimates(y, p, k, rng, draws):
  """Per draw of k shared labelled queries: the pooled beta^2 and the raw mean square of
  the residual means (noise not subtracted)."""
  n, m = y.shape
  est, raw = [], []
  for _ in range(draws):
    labelled = np.zeros((n, m), bool)
    labelled[rng.choice(n, k, replace=False)] = True
    _, beta2 = grid_estimators.model_bias_sq(y, p, labelled, np.full((n, m), 1 / k), np.full(m, n), True)
    est.append(beta2.mean())
    d = np.where(labelled, y - p, 0).sum(0) / k
    raw.append(np.mean((d - d.mean()) ** 2))
  return est, raw


def test_model_bias_is_measured_on_labelled_residuals_net_of_their_noise():
  # The model's per-LLM bias relative to the fleet is known here (u_m in the logits):
  # the pooled beta^2 from k = 50 shared labels matches it on average, while the raw
  # mean square of the residual means (noise not subtracted) overstates it.
  y, p = _fleet(seed=2)
  n, m = y.shape
  bias = p.mean(0) - y.mean(0)
  truth = np.mean((bias - bias.mean()) ** 2)
  k, rng = 50, np.random.default_rng(3)
  est, raw = _bias_estimates(y, p, k, rng, 300)
  assert np.mean(est) == pytest.approx(truth, rel=0.3)
  assert np.mean(raw) > 1.5 * truth


def test_blend_weight_moves_to_the_labels_as_their_variance_shrinks():
  # V_P = (1 - k/n)^2 beta^2 (s_r^2 = 0): equal variances -> 1/2; k = n -> the labels alone.
  w = grid_estimators.blend_weight(np.array([0.01]), 0.01, np.array([0.0]), np.array([10]), np.array([10 ** 9]))
  assert w == pytest.approx([0.5])
  ks = np.array([10, 25, 50, 100])
  v_naive = 0.25 * (1 - ks / 1000) / ks
  w = grid_estimators.blend_weight(v_naive, 0.003, np.zeros(4), ks, np.full(4, 1000))
  assert np.all(np.diff(w) > 0) and w[-1] < 1
  assert w[0] == pytest.approx(0.99 ** 2 * 0.003 / (0.99 ** 2 * 0.003 + 0.25 * 0.99 / 10))
  assert grid_estimators.blend_weight(np.array([0.0]), 0.01, np.array([0.0]), np.array([7]),
                           np.array([7])) == [1.0]


def test_fold_ids_hold_out_whole_queries():
  labelled = np.zeros((20, 3), bool)
  labelled[[1, 4, 6, 9, 13, 17, 18], :] = True
  labelled[2, 0] = True  # one LLM's own query
  folds = grid_estimators.fold_ids(labelled, np.random.default_rng(0))
  assert set(folds[labelled.any(1)]) == set(range(grid_estimators.FOLDS)) and (folds[~labelled.any(1)] == -1).all()
  assert np.bincount(folds[labelled.any(1)]).tolist() == [2, 2, 2, 1, 1]


def _shifted_bench(n=400, m=8, shift=0.7, model_noise=0.0, seed=3):
  rng = np.random.default_rng(seed)
  term = rng.normal(size=(n, 1)) + rng.normal(size=(1, m))
  truth = term + shift + model_noise * rng.normal(size=(1, m))
  labels = (rng.random((n, m)) < 1 / (1 + np.exp(-truth))).astype(np.int8)
  emb = rng.normal(size=(n, 4))
  return _bench(term, labels, embeddings=emb), labels


def test_blend_beats_the_naive_mean_with_a_right_model_and_stays_near_it_with_a_wrong_one():
  for noise, bound in ((0.0, 0.8), (1.5, 1.1)):
    bench, labels = _shifted_bench(model_noise=noise)
    out = grid.benchmark_grid(bench, [25], draws=8, seed=0, choices=["random"])
    true = grid.true_scores(labels)
    mae = {key: np.nanmean(np.abs(v - true)) for key, v in out.items()}
    for protocol in grid.PROTOCOLS:
      naive = mae[(protocol, "random", 25, "naive")]
      assert mae[(protocol, "random", 25, "blend")] < bound * naive, (noise, protocol)


def test_new_estimators_never_read_the_unlabelled_answers():
  bench, labels = _shifted_bench(n=120, m=4)
  labelled, weights, _ = grid.shared_design(bench, "random", 15, np.random.default_rng(0), seed=0)
  before = held_out.estimates(bench, labelled, weights, grid.Priors(), shared=True,
                          rng=np.random.default_rng(5))
  flipped = np.where(labelled, labels, 1 - labels).astype(np.int8)
  other = grid.Bench(bench.logits, flipped, bench.ability_term, bench.difficulty, bench.a_sq,
                     bench.embeddings)
  after = held_out.estimates(other, labelled, weights, grid.Priors(), shared=True,
                         rng=np.random.default_rng(5))
  for name in ("blend", "kernel"):
    np.testing.assert_allclose(before[name], after[name])


# ----------------------------------------------------------------------------
# kernel: residuals spread by embedding similarity.

def test_kernel_spreads_a_clustered_residual_and_rejects_pure_noise():
  rng = np.random.default_rng(0)
  centres = np.array([[0.0, 0.0], [6.0, 0.0]])
  cluster = np.repeat([0, 1], 100)
  x = centres[cluster] + 0.3 * rng.normal(size=(200, 2))
  labelled = np.zeros((200, 2), bool)
  labelled[rng.choice(200, 60, replace=False)] = True
  # The model is 0.3 too high on cluster 0 and 0.3 too low on cluster 1, for both LLMs.
  resid = np.where(cluster == 0, -0.3, 0.3)[:, None] + 0.05 * rng.normal(size=(200, 2))
  chosen = grid_estimators.choose_kernel(x, resid, labelled)
  assert chosen is not None
  spread = grid_estimators.spread_residuals(x, resid, labelled, *chosen)
  free = ~labelled[:, 0]
  assert np.abs(spread[free & (cluster == 0)] + 0.3).max() < 0.08
  assert np.abs(spread[free & (cluster == 1)] - 0.3).max() < 0.08
  # Residuals that are noise alone: every smoother predicts a left-out one worse than 0.
  noise = rng.choice([-0.5, 0.5], size=(200, 2))
  assert grid_estimators.choose_kernel(x, noise, labelled) is None


def test_kernel_estimate_is_nan_without_embeddings_and_fills_the_labels():
  bench, labels = _shifted_bench(n=80, m=3)
  labelled, weights, _ = grid.shared_design(bench, "random", 10, np.random.default_rng(0), seed=0)
  est = held_out.estimates(bench, labelled, weights, grid.Priors(), shared=True)
  assert np.isfinite(est["kernel"]).all() and ((0 <= est["kernel"]) & (est["kernel"] <= 1)).all()
  bare = grid.Bench(bench.logits, bench.labels, bench.ability_term, bench.difficulty, bench.a_sq)
  assert np.isnan(held_out.estimates(bare, labelled, weights, grid.Priors(), shared=True)["kernel"]).all()


# ----------------------------------------------------------------------------
# fluid: adaptive on the ability scale.

def test_expected_information_is_p_one_minus_p_at_zero_variance_and_flatter_when_unsure():
  logits = np.array([-4.0, 0.0, 3.0])
  p = 1 / (1 + np.exp(-logits))
  assert scores.expected_information(logits, 0.0, 0.0) == pytest.approx(p * (1 - p))
  wide = scores.expected_information(logits, 0.0, 9.0)
  assert wide[1] < 0.25 and wide[0] > p[0] * (1 - p[0])
  assert scores.expected_information(logits, 1.0, 0.0) == pytest.approx(
      scores.expected_information(logits + 1.0, 0.0, 0.0))


def test_fluid_picks_aim_at_the_benchmarks_true_level_pooled_over_the_fleet():
  # Every LLM answers as if its logit were 4 higher than the model says. Pooled over
  # the fleet, fluid's offset finds the shift, so its picks after the first few sit
  # where the *true* P is near 1/2 (model logit near -4); a per-LLM offset alone,
  # held near 0 by its tight prior, would aim near the model's own 1/2.
  rng = np.random.default_rng(0)
  n, m = 600, 8
  logits = rng.normal(0, 3, size=(n, m))
  y = (rng.random((n, m)) < 1 / (1 + np.exp(-(logits + 4)))).astype(float)
  known = np.ones((n, m), bool)
  known[:50, 3] = False
  orders = scores.fluid_orders(logits, y, known, 20, np.random.default_rng(1), prior_sd=0.3,
                               shared_sd=3.0)
  rows3 = np.flatnonzero(known[:, 3])
  for mm, order in enumerate(orders):
    assert len(order) == 20 == len(set(order.tolist()))
    rows = rows3 if mm == 3 else np.arange(n)
    late = logits[rows[order[8:]], mm]
    assert abs(np.median(late) + 4) < 1.0, (mm, np.median(late))


def test_fluid_is_a_per_llm_choice_scored_by_every_estimator():
  bench, _ = _shifted_bench(n=150, m=4)
  assert ("per_llm", "fluid") in grid.cells() and ("shared", "fluid") not in grid.cells()
  out = grid.benchmark_grid(bench, [10], draws=2, seed=0, protocols=["per_llm"], choices=["fluid"])
  assert {key[3] for key in out} == set(grid.ESTIMATORS)
  assert all(np.isfinite(v).all() for v in out.values())


# ----------------------------------------------------------------------------
# The plot picks each choice's estimator on the other datasets.

def test_plot_estimator_is_chosen_on_the_other_datasets_of_the_same_kind():
  from irt_jax.benchmarks import figures
  mae = {"a": {"irt": 0.05, "gp_irt": 0.07}, "b": {"irt": 0.09, "gp_irt": 0.05},
         "c": {"irt": 0.06, "gp_irt": 0.07}}
  records = [{**_record(d, "shared", "random", e, 10, v, 0.01), "kind": "irtnet"}
             for d, row in mae.items() for e, v in row.items()]
  # a: b and c average gp_irt 0.06 < irt 0.075; b: a and c prefer irt; c: gp_irt (0.06 vs 0.07).
  assert figures.grid_plot_estimator(records, "a", "shared", "random") == ("gp_irt", True)
  assert figures.grid_plot_estimator(records, "b", "shared", "random") == ("irt", True)
  assert figures.grid_plot_estimator(records, "c", "shared", "random") == ("gp_irt", True)
  lone = [r for r in records if r["dataset"] == "a"]
  assert figures.grid_plot_estimator(lone, "a", "shared", "random") == ("irt", False)


def test_comparisons_table_pairs_same_picks_and_leaves_other_protocols_out():
  records = [_record("d", "per_llm", "random", "naive", 10, 0.10, 0.01, per_draw=[0.09, 0.10, 0.11]),
             _record("d", "per_llm", "random", "blend", 10, 0.08, 0.01, per_draw=[0.08, 0.08, 0.08]),
             _record("d", "per_llm", "random", "offset", 10, 0.07, 0.01),
             _record("d", "per_llm", "fluid", "offset", 10, 0.09, 0.01),
             _record("d", "per_llm", "stratified", "naive", 10, 0.0933, 0.01,
                     per_draw=[0.08, 0.10, 0.10]),
             _record("d", "shared", "random", "naive", 10, 0.10, 0.01)]
  rows = grid_tables.benchmark_grid_comparisons(records).splitlines()
  cells = [c.strip() for c in rows[2].strip("|").split("|")]
  # blend vs naive, same picks: gaps 0.01, 0.02, 0.03 -> +2.00 ± 1.00; stratified vs random
  # picks share their random numbers: gaps 0.01, 0, 0.01 -> +0.67 ± 0.58; fluid vs random unpaired.
  assert cells == ["d", "per_llm", "10", "n/a", "9.33 vs 10.00 (+0.67 ± 0.58)", "n/a",
                   "8.00 vs 10.00 (+2.00 ± 1.00)", "n/a", "9.00 vs 7.00 (-2.00)", "n/a"]
  shared = [c.strip() for c in rows[3].strip("|").split("|")]
  assert shared[3:] == ["n/a"] * 5 + ["-", "-"]


def test_model_bias_of_an_exact_model_is_near_zero_not_its_residuals_noise():
  # The model is the truth (no per-LLM bias): what is left in the residual means is
  # sampling noise, which beta^2 must not count as bias (a blend would then trust
  # the labels for nothing).
  rng = np.random.default_rng(4)
  n, m, k = 2000, 10, 20
  b, theta = rng.normal(0, 2, n), rng.normal(0, 0.5, m)
  p = 1 / (1 + np.exp(-(theta[None] - b[:, None])))
  y = (rng.random((n, m)) < p).astype(float)
  est, raw = _bias_estimates(y, p, k, rng, 200)
  assert np.mean(est) < 0.35 * np.mean(raw)


# ----------------------------------------------------------------------------
# diff: the cross-fitted difference estimator (derivation in benchmarks.grid_estimators).

def _small_bench(seed=0, n=7, m=2):
  """A model that is informative but off: its logits track the labels' own
  probabilities, shifted and scaled wrong."""
  rng = np.random.default_rng(seed)
  truth = rng.normal(0, 1.5, size=(n, m))
  labels = (rng.random((n, m)) < 1 / (1 + np.exp(-truth))).astype(np.int8)
  return _bench(0.5 * truth - 1.0, labels), labels


def _diff(bench, labelled, groups):
  weights = np.where(labelled, 1.0 / np.maximum(labelled.sum(0), 1), 0.0)
  return held_out.estimates(bench, labelled, weights, grid.Priors(), groups=groups,
                        rng=np.random.default_rng(0))


def test_diff_is_exactly_unbiased_over_every_random_draw():
  # Every 3 of 7 queries labelled (shared, one group), 3 picks -> 3 folds of one each:
  # the mean over all 35 draws is the true accuracy, to rounding. The model-based irt
  # estimate, fitted to the same labels, is not.
  import itertools
  bench, labels = _small_bench()
  n, m = labels.shape
  true = grid.true_scores(labels)
  diffs, irts = [], []
  for rows in itertools.combinations(range(n), 3):
    labelled = np.zeros((n, m), bool)
    labelled[list(rows)] = True
    est = _diff(bench, labelled, np.zeros((n, m), np.int64))
    diffs.append(est["diff"])
    irts.append(est["irt"])
  np.testing.assert_allclose(np.mean(diffs, axis=0), true, atol=1e-9)
  assert np.abs(np.mean(irts, axis=0) - true).max() > 1e-3


def test_diff_is_exactly_unbiased_over_every_stratified_draw():
  # Strata {0,1,2}, {3,4}, {5,6}, one pick each: 12 equally likely draws; the
  # estimate weighs each stratum by its size.
  import itertools
  bench, labels = _small_bench(seed=1)
  n, m = labels.shape
  groups = np.repeat(np.array([[0], [0], [0], [1], [1], [2], [2]]), m, axis=1)
  true = grid.true_scores(labels)
  diffs = []
  for rows in itertools.product([0, 1, 2], [3, 4], [5, 6]):
    labelled = np.zeros((n, m), bool)
    labelled[list(rows)] = True
    weights = np.where(labelled, np.array([3, 3, 3, 2, 2, 2, 2])[:, None] / 7, 0.0)
    diffs.append(held_out.estimates(bench, labelled, weights, grid.Priors(), groups=groups,
                                rng=np.random.default_rng(0))["diff"])
  np.testing.assert_allclose(np.mean(diffs, axis=0), true, atol=1e-9)


def test_diff_with_a_constant_model_is_the_naive_mean_whatever_the_fold_sizes():
  # No ability term and b = 0: P is constant over queries for each LLM, and the
  # difference estimator reduces to the (design-weighted) label mean exactly, also
  # with 7 picks dealt into folds of 2, 2, 1, 1, 1.
  rng = np.random.default_rng(2)
  n, m = 40, 3
  labels = (rng.random((n, m)) < 0.6).astype(np.int8)
  bench = _bench(np.zeros((n, m)), labels)
  labelled, weights, groups = grid.per_llm_design(bench, "random", 7, rng)
  est = held_out.estimates(bench, labelled, weights, grid.Priors(), groups=groups, rng=rng)
  np.testing.assert_allclose(est["diff"], est["naive"], atol=1e-12)
  labelled, weights, groups = grid.shared_design(bench, "stratified", 6, rng, seed=0)
  est = held_out.estimates(bench, labelled, weights, grid.Priors(), groups=groups, rng=rng)
  np.testing.assert_allclose(est["diff"], est["naive"], atol=1e-12)


def test_diff_with_a_perfect_model_has_no_error_left():
  # Logits +-8 on the side of each label: the refitted P is the label to 1e-3, so
  # whatever 10 queries are drawn the estimate is the truth, while the label mean
  # of 10 of 300 is off by points.
  rng = np.random.default_rng(3)
  n, m = 300, 4
  labels = (rng.random((n, m)) < 0.7).astype(np.int8)
  bench = _bench(8.0 * (2 * labels - 1.0), labels)
  true = grid.true_scores(labels)
  for _ in range(5):
    labelled, weights, groups = grid.per_llm_design(bench, "random", 10, rng)
    est = held_out.estimates(bench, labelled, weights, grid.Priors(), groups=groups, rng=rng)
    assert np.abs(est["diff"] - true).max() < 2e-3
  assert np.abs(est["naive"] - true).max() > 0.02


def test_diff_sits_below_the_naive_mean_when_the_model_tracks_the_labels():
  # Items of widely varying difficulty that the model knows up to a scale and a
  # benchmark-wide shift: its residuals vary far less than the labels, so the
  # difference estimator's error is well below the naive mean's at every k.
  rng = np.random.default_rng(4)
  n, m = 600, 6
  b = rng.normal(0, 2.5, n)
  truth = rng.normal(0, 0.5, m)[None, :] - b[:, None]
  labels = (rng.random((n, m)) < 1 / (1 + np.exp(-truth))).astype(np.int8)
  bench = _bench(0.7 * truth - 1.0, labels)
  out = grid.benchmark_grid(bench, [10, 50, 100], draws=12, seed=0, protocols=["per_llm"],
                            choices=["random"])
  true = grid.true_scores(labels)
  for k in (10, 50, 100):
    mae = {e: np.abs(out[("per_llm", "random", k, e)] - true).mean() for e in ("naive", "diff")}
    assert mae["diff"] < 0.8 * mae["naive"], (k, mae)


def test_design_variance_matches_the_variance_over_every_draw():
  # Enumerated by hand over every draw: 2 of 6 at random, and one pick from each
  # of the strata {0, 1, 2}, {3, 4, 5} (weights 1/2).
  import itertools
  y = np.array([0.0, 1.0, 0.0, 1.0, 1.0, 0.0])
  srs = [y[list(s)].mean() for s in itertools.combinations(range(6), 2)]
  assert grid_estimators.design_variance(y, np.zeros(6, int), [2]) == pytest.approx(np.var(srs))
  strat = [(y[a] + y[b]) / 2 for a in range(3) for b in range(3, 6)]
  groups = np.repeat([0, 1], 3)
  assert grid_estimators.design_variance(y, groups, [1, 1]) == pytest.approx(np.var(strat))
  # Strata that sort the values remove the variance altogether.
  assert grid_estimators.design_variance(np.sort(y), groups, [1, 1]) == pytest.approx(0.0)


@pytest.mark.slow
def test_stratification_check_script_reports_exact_sds_from_held_out_runs(tmp_path):
  # One held-out run whose logits sort the labels perfectly: stratifying on P then
  # leaves almost no variance, random picks keep the binomial one; no runs: one line.
  rng = np.random.default_rng(0)
  n, m = 200, 3
  logits = rng.normal(0, 2, size=(n, m))
  labels = (logits > 0).astype(np.int8)
  folder = tmp_path / "d" / "heldout" / "b"
  folder.mkdir(parents=True)
  np.savez(folder / "predictions.npz", logits=logits, labels=labels, a_sq=np.ones(n))
  out = tmp_path / "s.jsonl"
  script = [sys.executable, "-m", "experiments.stratification_check", f"--out={out}"]
  proc = subprocess.run(script + [f"--workdirs={tmp_path / 'd'}", "--ks=10"], cwd=REPO,
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-2000:]
  (record,) = [json.loads(line) for line in open(out)]
  y = labels.astype(float)
  srs = 100 * np.sqrt(np.mean([grid_estimators.design_variance(y[:, j], np.zeros(n, int), [10])
                               for j in range(m)]))
  assert record["workdir"] == "d" and record["random"] == pytest.approx(srs)
  assert record["stratified_own"] < 0.3 * record["random"] and record["corr"] > 0.7
  table = subprocess.run(script + ["--table_only"], cwd=REPO, capture_output=True, text=True,
                         timeout=300)
  assert f"| d | 10 | {record['random']:.2f} |" in table.stdout
  bad = subprocess.run(script[:3], cwd=REPO, capture_output=True, text=True, timeout=300)
  assert bad.returncode == 1 and "--out and --workdirs" in bad.stderr
