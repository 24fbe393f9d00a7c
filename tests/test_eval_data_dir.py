"""`eval.py --data_dir`: a run evaluated on another folder, LLMs matched by name."""

import os
import shutil
import subprocess
import sys

import pandas as pd
import pytest

from configs import knn as knn_config
from configs import test as test_config
from irt_jax import evaluation
from irt_jax import training
from tests.conftest import REPO

EVALS = ("correctness", "routing")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("dd") / "knn")
  config = knn_config.get_config()
  config.data = test_config.get_config().data
  config.model.update(k_grid=(10,), weighting_grid=("uniform",), smoothing_grid=(1.0,))
  training.run(config, workdir)
  return workdir


def copy_with(src, dst, models=None, drop=None, extra=None):
  """A copy of a data folder: model_order rows reordered / dropped, or an extra LLM
  answering every train and test query right."""
  shutil.copytree(src, dst)
  order = pd.read_csv(os.path.join(dst, "model_order.csv"), dtype=str)
  if models is not None:
    order = order.iloc[models]
  if drop is not None:
    order = order[order.model_id != drop]
    for split in ("train", "val", "test"):
      path = os.path.join(dst, f"{split}.csv")
      frame = pd.read_csv(path, dtype=str)
      frame[frame.model_id != drop].to_csv(path, index=False)
  if extra is not None:
    order = pd.concat([order, pd.DataFrame({"model_id": ["999"], "model_name": [extra]})])
    for split in ("train", "test"):
      path = os.path.join(dst, f"{split}.csv")
      frame = pd.read_csv(path, dtype=str)
      new = frame.drop_duplicates("prompt_id").assign(model_id="999", model_name=extra, label="1")
      if "score" in new.columns:
        new["score"] = "1.0"
      pd.concat([frame, new]).to_csv(path, index=False)
  order.to_csv(os.path.join(dst, "model_order.csv"), index=False)
  return dst


def test_reordered_folder_gives_the_same_figures_and_extra_llms_are_a_stated_subset(run, tmp_path):
  own = evaluation.run(run, "test", str(tmp_path / "own"), names=EVALS)
  src = os.path.join(run, "synthetic_data")
  n = len(pd.read_csv(os.path.join(src, "model_order.csv")))
  reordered = copy_with(src, str(tmp_path / "rev"), models=list(range(n))[::-1])
  got = evaluation.run(run, "test", str(tmp_path / "o1"), names=EVALS, data_dir=reordered)
  assert got["correctness"] == pytest.approx(own["correctness"])
  assert got["routing"]["micro"] == pytest.approx(own["routing"]["micro"])
  assert "data_subset" not in got
  wider = copy_with(src, str(tmp_path / "wide"), extra="always-right")
  got = evaluation.run(run, "test", str(tmp_path / "o2"), names=EVALS, data_dir=wider)
  assert got["data_subset"]["models_left_out"] == ["always-right"]
  assert got["correctness"] == pytest.approx(own["correctness"])   # scored on the run's LLMs
  assert got["routing"]["baselines"]["oracle"] == own["routing"]["baselines"]["oracle"]


@pytest.mark.slow  # eval.py in a subprocess
def test_a_folder_lacking_an_llm_of_the_run_is_one_line(run, tmp_path):
  src = os.path.join(run, "synthetic_data")
  first = pd.read_csv(os.path.join(src, "model_order.csv"), dtype=str)
  lacking = copy_with(src, str(tmp_path / "lack"), drop=first.model_id.iloc[0])
  out = subprocess.run([sys.executable, "eval.py", f"--workdir={run}", f"--data_dir={lacking}",
                        f"--output_dir={tmp_path / 'o'}", "--evaluators=correctness"],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
  assert out.returncode != 0 and "Traceback" not in out.stderr
  last = out.stderr.strip().splitlines()[-1]
  assert last.startswith(f"eval: {lacking}: lacks 1 LLM(s) the run routes among")
  assert first.model_name.iloc[0] in last
  assert not os.path.exists(tmp_path / "o" / "report.json")
