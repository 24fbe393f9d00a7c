"""Generic helpers: config overrides given as strings, config files from flags."""

import subprocess
import sys

import ml_collections
import pytest

from configs import irtnet, synthetic
from irt_jax import utils
from tests.conftest import REPO


def _config():
  return ml_collections.ConfigDict(dict(
      seed=0, train=dict(num_epochs=30, batching="blocks", use_ema=False),
      model=dict(dropout=0.5, name="irtnet", extra=None)))


def test_overrides_take_the_type_of_the_field_they_replace():
  config = _config()
  utils.apply_overrides(config, ["train.num_epochs=3", "model.dropout=1", "train.use_ema=True",
                                 "train.batching=pairs", "model.extra=7", "seed=2"])
  assert config.train.num_epochs == 3 and isinstance(config.train.num_epochs, int)
  assert config.model.dropout == 1.0 and isinstance(config.model.dropout, float)
  assert config.train.use_ema is True
  assert config.train.batching == "pairs"
  assert config.model.extra == 7  # an untyped field takes the literal's type
  assert config.seed == 2


@pytest.mark.parametrize("item, message", [
    ("train.epochs=3", "no field 'train.epochs'; valid there: batching, num_epochs, use_ema"),
    ("optim.lr=1", "no field 'optim'; valid there: model, seed, train"),
    ("train.num_epochs=3.5", "expected int"),
    ("model.dropout=high", "expected float"),
    ("train.use_ema=yes", "expected true or false"),
    ("train=3", "that is a group of fields (batching, num_epochs, use_ema), not one value"),
    ("seed.x=1", "no field 'seed.x'; valid there: none (a value)"),
    ("train.batching", "expected key=value"),
])
def test_a_bad_override_names_itself_and_what_is_valid(item, message):
  config = _config()
  with pytest.raises(ValueError) as err:
    utils.apply_overrides(config, [item])
  assert f"override {item!r}" in str(err.value) and message in str(err.value)
  assert config.to_dict() == _config().to_dict()  # nothing half-applied


def test_the_paper_config_samples_pairs_and_the_default_job_blocks():
  # configs/irtnet.py keeps the released code's sampling; the quick synthetic job
  # (and configs/test.py, bench_predict.py above it) pins the fast layout.
  assert irtnet.get_config().train.batching == "pairs"
  assert synthetic.get_config().train.batching == "blocks"


@pytest.mark.parametrize("entry", [["train.py"], ["-m", "irt_jax", "predict-benchmark"]])
def test_a_config_file_that_is_not_there_is_one_line(entry, tmp_path):
  # ml_collections defers the load error to the first read, deep inside training,
  # as a multi-line OSError traceback.
  proc = subprocess.run([sys.executable, *entry, "--config=configs/nope.py",
                         f"--workdir={tmp_path / 'w'}"], cwd=REPO, capture_output=True,
                        text=True, timeout=120)
  program = "train" if entry == ["train.py"] else "predict-benchmark"
  assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
  assert proc.stderr.strip().splitlines()[-1] == (
      f"{program}: --config: cannot be loaded: [Errno 2] No such file or directory: "
      "'configs/nope.py'")
  assert not (tmp_path / "w").exists()
