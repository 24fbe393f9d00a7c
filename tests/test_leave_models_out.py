"""Leave-models-out: the in-memory subset, and the protocol end to end on tiny
synthetic data (no copy of the data written, the base run's checkpoint holding
the subset's fingerprint, a rerun resuming instead of retraining)."""

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from irt_jax import checkpoint as ckpt_lib
from irt_jax.data import io as data_lib
from irt_jax.data import splits as data_splits
from irt_jax.data import synthetic
from irt_jax.protocols import leave_models_out as lmo
from tests.conftest import REPO, synthetic_spec


def test_without_models_equals_loading_a_folder_without_their_rows(synthetic_dir, tmp_path):
  data = data_lib.load_dataset(synthetic_dir)
  drop = [data.model_names[1], data.model_names[4]]
  subset = data_splits.without_models(data, drop)
  assert subset.model_names == tuple(n for n in data.model_names if n not in drop)
  # The same rows written to disk and read by the loader give the same arrays
  # (a query whose only known cells were the dropped models' leaves the split).
  out = tmp_path / "subset"
  out.mkdir()
  order = pd.read_csv(os.path.join(synthetic_dir, "model_order.csv"), dtype=str)
  order[~order["model_name"].isin(drop)].to_csv(out / "model_order.csv", index=False)
  for name in ("question_order.csv", "question_embeddings.npy"):
    os.symlink(os.path.join(synthetic_dir, name), out / name)
  for split in data_lib.SPLITS:
    frame = pd.read_csv(os.path.join(synthetic_dir, f"{split}.csv"), dtype=str)
    frame[~frame["model_name"].isin(drop)].to_csv(out / f"{split}.csv", index=False)
  back = data_lib.load_dataset(str(out))
  for split in data_lib.SPLITS:
    np.testing.assert_array_equal(subset.split(split).queries, back.split(split).queries)
    np.testing.assert_array_equal(subset.split(split).labels, back.split(split).labels)
  assert data_lib.fingerprint(subset) == data_lib.fingerprint(back)
  with pytest.raises(data_lib.DataError, match="no model"):
    data_splits.without_models(data, ["nobody"])
  with pytest.raises(data_lib.DataError, match="leaves none"):
    data_splits.without_models(data, list(data.model_names))


def test_held_out_models_are_seeded_and_leave_some_to_train_on():
  names = tuple(f"m{i}" for i in range(9))
  held = lmo.held_out_models(names, 1 / 3, seed=0)
  assert len(held) == 3 and held == lmo.held_out_models(names, 1 / 3, seed=0)
  assert held == sorted(held, key=names.index)
  assert held != lmo.held_out_models(names, 1 / 3, seed=1)
  with pytest.raises(data_lib.DataError, match="leaves none"):
    lmo.held_out_models(names[:2], 0.9, seed=0)


@pytest.mark.slow
def test_protocol_end_to_end_trains_on_the_subset_and_resumes(tmp_path):
  folder = synthetic.write(str(tmp_path / "data"), synthetic_spec(
      n_models=6, n_queries=300, embed_dim=32, n_benchmarks=3, true_dim=3, seed=4))
  workdir = str(tmp_path / "lmo")
  cmd = [sys.executable, "-m", "experiments.leave_models_out", "--config=configs/test.py",
         f"--data_dir={folder}", f"--workdir={workdir}", "--ks=4,8",
         "--config.train.num_epochs=1"]
  proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  result = json.load(open(os.path.join(workdir, "results.json")))
  held = result["held_out"]
  assert len(held) == 2 and result["n_models"] == 6
  assert {(r["strategy"], r["k"]) for r in result["rows"]} == {
      (s, k) for s in ("random", *lmo.STRATEGIES) for k in (4, 8)}
  assert "| 8 |" in proc.stdout and os.path.getsize(os.path.join(workdir, "error_vs_k.png")) > 5000
  # The base run trained on the subset in memory: no data folder was written,
  # and its checkpoint records the subset's fingerprint (a resume must match it).
  assert not os.path.exists(os.path.join(workdir, "data_subset"))
  data = data_lib.load_dataset(folder)
  _, meta, _, index = ckpt_lib.Checkpoints(os.path.join(workdir, "base"),
                                          read_only=True).restore_json()
  assert meta["layout"]["data"] == data_lib.fingerprint(data_splits.without_models(data, held))
  assert index["model_names"] == [n for n in data.model_names if n not in held]
  # A rerun finds both runs done: no new checkpoint, the same results.
  steps = sorted(os.listdir(os.path.join(workdir, "base", "checkpoints")))
  again = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
  assert again.returncode == 0, again.stderr[-3000:]
  assert sorted(os.listdir(os.path.join(workdir, "base", "checkpoints"))) == steps
  assert json.load(open(os.path.join(workdir, "results.json"))) == result
  # A fraction the protocol cannot use ends in one line.
  bad = subprocess.run(cmd[:6] + ["--fraction=0.99"], cwd=REPO, capture_output=True,
                       text=True, timeout=600)
  assert bad.returncode == 1 and "Traceback" not in bad.stderr
  assert bad.stderr.strip().splitlines()[-1].startswith("leave_models_out.py: holding out 6 of 6")
