"""experiments.embedding_check.compare: distances in float16's own unit, by hand."""

import numpy as np

from experiments import embedding_check


def test_compare_counts_float16_rounding_by_hand():
  stored = np.array([[1.0, 0.5], [0.25, -1.0]], np.float16)
  ours = stored.astype(np.float32).copy()
  ours[0, 0] += 2.0 ** -12           # a quarter ulp of 1.0 in float16 (ulp 2^-10): within rounding
  ours[1, 1] -= 3 * 2.0 ** -11       # 1.5 ulps of -1.0: beyond
  got = embedding_check.compare(ours, stored)
  assert got["rows"] == 2 and np.isclose(got["max_abs_diff"], 3 * 2.0 ** -11)
  assert np.isclose(got["max_diff_in_half_ulps"], 3.0, rtol=1e-3)
  assert got["share_within_half_ulp"] == 0.75
  # 1 + 2^-12 rounds back to 1.0; -1 - 1.5 * 2^-10 rounds away from -1: one cell in four differs
  assert got["share_equal_as_float16"] == 0.75
  assert 0.9999 < got["min_cosine"] <= 1.0
