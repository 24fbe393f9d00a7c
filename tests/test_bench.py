"""The benchmark suite's arithmetic: roofline time, its bound, and the flat summary."""

import pytest

from experiments.bench import run as bench_run

PEAKS = {"peak_matmul_gflops": 10.0, "peak_memory_gbps": 5.0}


def test_roofline_takes_the_slower_of_compute_and_memory():
  # 4 GFLOP at 10 GFLOP/s = 400 ms; 1 GB at 5 GB/s = 200 ms -> compute-bound, 400 ms.
  r = bench_run.roofline(4e9, 1e9, PEAKS)
  assert r == {"roofline_ms": pytest.approx(400.0), "bound": "compute"}
  # 1 GFLOP = 100 ms; 3 GB = 600 ms -> memory-bound.
  r = bench_run.roofline(1e9, 3e9, PEAKS)
  assert r == {"roofline_ms": pytest.approx(600.0), "bound": "memory"}
  assert bench_run.roofline(None, 1e9, PEAKS)["roofline_ms"] is None
  assert bench_run.roofline(1e9, 1e9, None)["roofline_ms"] is None


def test_summary_reads_nested_items_and_leaves_missing_ones_null():
  results = {"items": {
      "peak": {"peak_matmul_gflops": 12.0, "peak_memory_gbps": 6.0, "peak_rss_mb": 100.0},
      "steps": {"paper": {"blocks": {"step_ms": 250.0, "step_fraction_of_roofline": 0.4}},
                "epoch_speedup_vs_per_pair": 21.0},
      "route": {"route_queries_per_s": {"1": 50.0}, "route_text": None, "peak_rss_mb": 7.0},
  }}
  flat = bench_run.headline(results)
  assert flat["peak_matmul_gflops"] == 12.0
  assert flat["paper.blocks.step_ms"] == 250.0
  assert flat["paper.blocks.step_fraction_of_roofline"] == 0.4
  assert flat["paper.pairs.step_ms"] is None and flat["llmrouter.blocks.step_ms"] is None
  assert flat["epoch_speedup_vs_per_pair"] == 21.0
  assert flat["route_queries_per_s"] == {"1": 50.0}
  assert flat["route_text_latency_ms"] is None  # route_text is None, not a dict
  assert flat["time_to_train_llmrouter_s"] is None
  assert flat["peak_rss_mb"] == {"peak": 100.0, "steps": None, "route": 7.0}
