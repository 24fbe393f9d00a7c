"""Checkpoints that keep the best model through kills, resumes and early stops,
and resumes that refuse what they cannot continue exactly.

Validation accuracy is scripted (tests/scripted_training.py) so that the best
epoch is known and is not the last one: the bug class these tests are for (a
resumed run deleting its earlier best step) cannot show when the best epoch is
always the last. With the test config an epoch is 20 steps (480 training
queries, 24 query rows per batch on 4 devices).
"""

import json
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import pandas as pd
import pytest

from configs import test as test_config
from irt_jax import checkpoint as ckpt_lib
from irt_jax import evaluation
from irt_jax import predictors
from irt_jax import training
from irt_jax.training import resume
from tests import scripted_training
from tests.conftest import REPO

STEPS_PER_EPOCH = 20


def _config(num_epochs, **train):
  config = test_config.get_config()
  config.train.num_epochs = num_epochs
  config.train.early_stop_patience = 100
  config.train.update(train)
  return config


def _steps(workdir):
  return sorted(ckpt_lib.Checkpoints(workdir, read_only=True).all_steps())


def _same_params(a, b):
  jax.tree.map(np.testing.assert_array_equal, a, b)


@pytest.mark.slow
def test_best_epoch_not_last_survives_two_resumes_and_is_what_eval_restores(tmp_path,
                                                                              monkeypatch):
  # Epoch 1 is best; epoch 4 ties it (the earliest of a tie stays best).
  scripted_training.script_val_accuracy(monkeypatch, [0.5, 0.9, 0.6, 0.7, 0.9, 0.8])
  workdir = str(tmp_path)
  best = 2 * STEPS_PER_EPOCH
  first = training.train_and_evaluate(_config(2), workdir)
  assert first["best"]["step"] == best and first["best"]["epoch"] == 1
  best_params = first["state"].params  # the last epoch of this first part is the best one

  second = training.train_and_evaluate(_config(4), workdir)  # a restart: a new manager
  assert second["history"][-1]["epoch"] == 3 and second["best"]["step"] == best
  assert _steps(workdir) == [best, 4 * STEPS_PER_EPOCH]
  assert predictors.load(workdir).step == best
  assert second["resumed_from_step"] == best

  third = training.train_and_evaluate(_config(6), workdir)
  assert third["resumed_from_step"] == 4 * STEPS_PER_EPOCH
  assert [r["val_accuracy"] for r in third["history"]] == [0.5, 0.9, 0.6, 0.7, 0.9, 0.8]
  assert third["best"] == {"step": best, "epoch": 1, "val_accuracy": 0.9}
  assert _steps(workdir) == [best, 6 * STEPS_PER_EPOCH]
  restored = predictors.load(workdir)
  assert restored.step == best
  _same_params(restored.predictor.params, best_params)
  report = evaluation.run(workdir, "val", output_dir=str(tmp_path / "eval"))
  assert report["checkpoint_step"] == best


def test_rerun_after_early_stop_keeps_the_best_and_trains_nothing(tmp_path, monkeypatch):
  scripted_training.script_val_accuracy(monkeypatch, [0.5, 0.9, 0.6, 0.6, 0.95, 0.95])
  workdir = str(tmp_path)
  config = _config(6, early_stop_patience=2)
  done = training.train_and_evaluate(config, workdir)
  assert [r["epoch"] for r in done["history"]] == [0, 1, 2, 3]  # stopped: 2 epochs no gain
  assert _steps(workdir) == [2 * STEPS_PER_EPOCH, 4 * STEPS_PER_EPOCH]
  for patience in (2, 5):  # rerun as is, then with a longer (resumable) patience
    config.train.early_stop_patience = patience
    again = training.train_and_evaluate(config, workdir)
    assert again["resumed_from_step"] == 4 * STEPS_PER_EPOCH
    assert again["history"] == done["history"] and again["best"] == done["best"]
    assert _steps(workdir) == [2 * STEPS_PER_EPOCH, 4 * STEPS_PER_EPOCH]
  assert predictors.load(workdir).step == 2 * STEPS_PER_EPOCH


def _leave_a_killed_save(ckpt_dir, from_step, to_step):
  """What a kill during Orbax's save of `to_step` leaves: its temporary directory,
  holding part of the files (Orbax renames it to `to_step` only when complete)."""
  tmp = os.path.join(ckpt_dir, f"{to_step}.orbax-checkpoint-tmp-1700000000123456")
  shutil.copytree(os.path.join(ckpt_dir, str(from_step)), tmp)
  shutil.rmtree(os.path.join(tmp, "meta"))
  for root, _, files in os.walk(os.path.join(tmp, "state")):
    for f in files[: len(files) // 2]:
      os.remove(os.path.join(root, f))
  return tmp


@pytest.mark.slow
def test_a_kill_during_a_save_is_ignored_and_cleaned_on_resume(tmp_path, monkeypatch):
  scripted_training.script_val_accuracy(monkeypatch, [0.5, 0.9, 0.6])
  workdir, clean = str(tmp_path / "killed"), str(tmp_path / "clean")
  training.train_and_evaluate(_config(2), workdir)
  ckpt_dir = os.path.join(workdir, "checkpoints")
  tmp = _leave_a_killed_save(ckpt_dir, 2 * STEPS_PER_EPOCH, 2 * STEPS_PER_EPOCH + 7)
  assert _steps(workdir) == [2 * STEPS_PER_EPOCH]  # not a step: never restored from

  resumed = training.train_and_evaluate(_config(3), workdir)
  assert resumed["resumed_from_step"] == 2 * STEPS_PER_EPOCH
  assert not os.path.exists(tmp)
  assert sorted(os.listdir(ckpt_dir)) == [str(2 * STEPS_PER_EPOCH), str(3 * STEPS_PER_EPOCH)]
  uninterrupted = training.train_and_evaluate(_config(3), clean)
  _same_params(resumed["state"].params, uninterrupted["state"].params)
  assert resumed["best"] == uninterrupted["best"]


def _scripted_train(workdir, schedule, *extra, kill_after_saves=None):
  env = dict(os.environ, IRT_TEST_VAL_ACCURACY=",".join(map(str, schedule)),
             # The killed and the resumed process compile the same programs once.
             JAX_COMPILATION_CACHE_DIR=os.path.join(os.path.dirname(workdir), "jax_cache"),
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
  if kill_after_saves:
    env["IRT_TEST_KILL_AFTER_SAVES"] = str(kill_after_saves)
  return subprocess.run([sys.executable, "-m", "tests.scripted_training",
                         "--config=configs/test.py", f"--workdir={workdir}",
                         "--config.train.early_stop_patience=100", *extra],
                        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_kill_9_after_the_best_epoch_then_resume_and_eval_restores_the_best(tmp_path):
  """The issue's scenario with the real train.py: best epoch 1 (step 40), SIGKILL
  right after the mid-epoch save at step 49, rerun, evaluate the default step."""
  workdir = str(tmp_path / "run")
  schedule = [0.5, 0.9, 0.6]
  args = ["--config.train.num_epochs=3", "--config.checkpoint.every_steps=7"]
  # Saves: 7, 14, 20 | 21, 28, 35, 40 | 42, 49 <- killed after the 9th.
  killed = _scripted_train(workdir, schedule, *args, kill_after_saves=9)
  assert killed.returncode == -9, killed.stderr[-2000:]
  assert _steps(workdir) == [40, 49]

  resumed = _scripted_train(workdir, schedule, *args)
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert "Resumed from step 49 " in resumed.stderr
  assert _steps(workdir) == [40, 60]
  history = [json.loads(l) for l in open(os.path.join(workdir, "metrics.jsonl"))]
  assert [r["val_accuracy"] for r in history] == schedule
  # What `eval.py --workdir` runs (its flag wiring is tested in test_checkpoint_eval).
  report = evaluation.run(workdir, "val", output_dir=str(tmp_path / "eval"))
  assert report["checkpoint_step"] == 40


# --- Refusing what cannot be continued exactly ----------------------------------

@pytest.fixture
def one_epoch(tmp_path):
  workdir = str(tmp_path / "run")
  training.train_and_evaluate(_config(1), workdir)
  return workdir


def _refusal(workdir, num_epochs=2):
  with pytest.raises(training.TrainingError) as e:
    training.train_and_evaluate(_config(num_epochs), workdir)
  message = str(e.value)
  assert "\n" not in message and "fresh --workdir" in message
  return message


def test_resume_on_another_device_or_process_count_is_refused(one_epoch, monkeypatch):
  expect = "trained on 4 device(s) in 1 process(es) (20 steps per epoch), but this job has "
  with monkeypatch.context() as m:
    m.setattr(jax, "device_count", lambda: 2)  # 2 devices: 22 rows per batch, 22 steps
    message = _refusal(one_epoch)
  assert expect + "2 device(s) in 1 process(es)" in message
  assert "resume with 4 device(s) in 1 process(es)" in message
  # A second process cannot be faked in one (Orbax asks the coordinator), so the
  # layout this job measures is edited instead.
  real_layout = resume.run_layout
  monkeypatch.setattr(resume, "run_layout",
                      lambda *a: {**real_layout(*a), "process_count": 2})
  assert expect + "4 device(s) in 2 process(es)" in _refusal(one_epoch)


@pytest.mark.slow
def test_resume_on_changed_data_is_refused_naming_what_changed(one_epoch):
  data_dir = os.path.join(one_epoch, "synthetic_data")
  train_csv = os.path.join(data_dir, "train.csv")
  original = pd.read_csv(train_csv, dtype=str, keep_default_na=False)
  flipped = original.copy()
  flipped.loc[0, "label"] = "1" if flipped.loc[0, "label"] == "0" else "0"
  flipped.to_csv(train_csv, index=False)
  assert "changed since: train split);" in _refusal(one_epoch)

  original.to_csv(train_csv, index=False)
  emb_file = os.path.join(data_dir, "question_embeddings.npy")
  emb = np.load(emb_file)
  np.save(emb_file, emb[::-1].copy())
  assert "changed since: embeddings);" in _refusal(one_epoch)

  np.save(emb_file, emb)  # the original data again: resumes
  assert training.train_and_evaluate(_config(2), one_epoch)["resumed_from_step"] == 20
