"""Quiet by default (irt_jax/logs.py): the user-facing tools print one bare line
per epoch and none of the start-up noise; --verbosity brings everything back."""

import importlib.util
import logging
import os
import re
import subprocess
import sys

import pytest

from irt_jax import logs
from tests.conftest import REPO

pytest_plugins = ["tests.router_fixtures"]   # run, text_run: small trained runs

ABSL_PREFIX = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ \S+:\d+\] ", re.M)


def _record(name: str, level: int, message: str, pathname: str = "x.py") -> logging.LogRecord:
  return logging.LogRecord(name, level, pathname, 1, message, None, None)


def test_the_filter_drops_start_up_noise_and_keeps_what_matters():
  keep = logs.QuietFilter().filter
  orbax = "/site-packages/orbax/checkpoint/checkpoint_manager.py"
  assert not keep(_record("jax._src.xla_bridge", logging.INFO,
                          "Unable to initialize backend 'tpu': INTERNAL: Failed to open libtpu.so"))
  assert keep(_record("jax._src.xla_bridge", logging.WARNING, "An NVIDIA GPU may be present but unusable"))
  assert not keep(_record("absl", logging.WARNING, "Given directory is read only=/run/checkpoints", orbax))
  assert not keep(_record("absl", logging.WARNING,
                          "CheckpointManagerOptions.read_only=True, setting save_interval_steps=0.", orbax))
  assert not keep(_record("absl", logging.INFO, "Finished saving checkpoint to step 44", orbax))
  assert keep(_record("absl", logging.WARNING, "a checkpoint step is missing its metadata", orbax))
  assert keep(_record("absl", logging.ERROR, "read only filesystem: cannot write", orbax))
  assert keep(_record("absl", logging.INFO, "epoch 1/2: train loss 0.55", "/irt_jax/training/loop.py"))


def test_the_plain_format_is_the_message_and_names_warnings():
  fmt = logs.PlainFormatter()
  assert fmt.format(_record("absl", logging.INFO, "epoch 1/2: train loss 0.55")) == "epoch 1/2: train loss 0.55"
  assert fmt.format(_record("absl", logging.WARNING, "disk almost full")) == "warning: disk almost full"
  assert fmt.format(_record("absl", logging.ERROR, "no data")) == "error: no data"


def _tool(args, **kw):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env.pop("TRANSFORMERS_NO_ADVISORY_WARNINGS", None)
  env.pop("TRANSFORMERS_VERBOSITY", None)
  result = subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=600, **kw)
  assert result.returncode == 0, result.stderr[-3000:]
  return result.stdout + result.stderr


@pytest.mark.slow
def test_train_and_eval_are_quiet_by_default_and_verbose_on_request(tmp_path):
  workdir = str(tmp_path / "run")
  common = ["--config=configs/test.py", f"--workdir={workdir}", "--config.train.log_every_steps=5"]
  quiet = _tool(["train.py", *common, "--config.train.num_epochs=1"])
  assert not ABSL_PREFIX.search(quiet), quiet
  assert "Unable to initialize backend" not in quiet and "step 5/" not in quiet
  assert re.findall(r"^epoch \d+/\d+: ", quiet, re.M) == ["epoch 1/1: "]
  assert "config:" not in quiet
  # the same run resumed for a second epoch, with absl's --verbosity: everything is back
  loud = _tool(["train.py", *common, "--config.train.num_epochs=2", "--verbosity=1"])
  assert ABSL_PREFIX.search(loud) and "epoch 2 step 5/" in loud and "config:" in loud

  quiet_eval = _tool(["eval.py", f"--workdir={workdir}", f"--output_dir={tmp_path / 'eval'}"])
  assert "correctness" in quiet_eval
  assert not ABSL_PREFIX.search(quiet_eval) and "read only" not in quiet_eval and "read_only" not in quiet_eval
  loud_eval = _tool(["eval.py", f"--workdir={workdir}", f"--output_dir={tmp_path / 'eval'}", "--verbosity=0"])
  assert "read_only=True" in loud_eval and ABSL_PREFIX.search(loud_eval)


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("torch") is not None,
                    reason="torch is installed, so transformers has no 'PyTorch was not found' notice")
def test_route_hides_the_transformers_torch_notice_unless_verbose(text_run):
  workdir, encoder_dir = text_run
  args = ["-m", "irt_jax", "route", f"--workdir={workdir}", f"--encoder_dir={encoder_dir}", "What is 17 * 23?"]
  quiet = _tool(args)
  assert "PyTorch was not found" not in quiet and not ABSL_PREFIX.search(quiet)
  assert len(quiet.strip().splitlines()) == 1                 # the chosen model, nothing else
  # the library itself keeps transformers' torch notice silent (test_router's Python API
  # test), so --verbosity brings back only the absl logs
  loud = _tool(args + ["--verbosity=0"])
  assert "PyTorch was not found" not in loud and ABSL_PREFIX.search(loud)
