"""`pip install .` gives a working package: the wheel holds irt_jax and configs, declares
requirements.txt's runtime section as lower bounds, and its tools run from any directory."""

import email.parser
import os
import re
import shutil
import subprocess
import sys
import zipfile

import pytest

from tests.conftest import REPO

NOT_SHIPPED = (".git", ".venv", ".models", "runs", "build", "dist", "__pycache__", "*.egg-info", ".ci")


def _normalise(name: str) -> str:
  return re.sub(r"[-_.]+", "-", name.strip().lower())    # PEP 503: huggingface_hub == huggingface-hub


def _runtime_section() -> list[str]:
  names, inside = [], False
  with open(os.path.join(REPO, "requirements.txt"), encoding="utf-8") as f:
    for line in f:
      if line.startswith("#"):
        inside = line.lower().startswith("# runtime")
      elif inside and line.split("#")[0].strip():
        names.append(_normalise(line.split("==")[0]))
  return names


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
  """The wheel built from a copy of the checkout (so no build/ or egg-info lands in it),
  offline: the venv's setuptools and wheel instead of an isolated build environment."""
  pytest.importorskip("setuptools", reason="building offline needs setuptools in the venv")
  pytest.importorskip("wheel", reason="building offline needs the 'wheel' package (requirements.txt)")
  base = tmp_path_factory.mktemp("packaging")
  source = base / "src"
  shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(*NOT_SHIPPED), symlinks=True)
  result = subprocess.run([sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation",
                           "--no-index", "-q", "-w", str(base / "dist")], cwd=source, capture_output=True,
                          text=True, timeout=600)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  (path,) = (base / "dist").glob("irt_jax-*.whl")
  return path


@pytest.mark.slow
def test_the_wheel_holds_the_package_and_configs_and_declares_the_runtime_requirements(wheel):
  with zipfile.ZipFile(wheel) as z:
    names = set(z.namelist())
    metadata = z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    entry_points = z.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
  for module in ("irt_jax/__init__.py", "irt_jax/logs.py", "irt_jax/cli/route.py", "irt_jax/__main__.py",
                 "irt_jax/routing/rules.py", "irt_jax/models/irtnet.py", "irt_jax/serving/app.py", "configs/common.py",
                 "configs/synthetic.py", "irt_jax/serving/static/ui.html",
                 "irt_jax/serving/static/ui.js", "irt_jax/serving/static/ui.css"):
    assert module in names, f"{module} missing from {wheel.name}"
  assert not [n for n in names if n.startswith(("tests/", "bench/", "scripts/", "experiments/"))]
  assert "[console_scripts]" in entry_points and "irt-jax = irt_jax.cli:main" in entry_points
  requires = email.parser.Parser().parsestr(metadata).get_all("Requires-Dist")
  assert sorted(_normalise(r.split(">=")[0]) for r in requires) == sorted(_runtime_section())
  assert "jax>=0.10.2" in requires or any(r.startswith("jax>=") for r in requires)
  assert not any("==" in r for r in requires) and not any(r.startswith(("pytest", "openai")) for r in requires)


@pytest.mark.slow
def test_the_installed_tools_run_from_any_directory(wheel, tmp_path):
  site = tmp_path / "site"
  with zipfile.ZipFile(wheel) as z:
    z.extractall(site)
  elsewhere = tmp_path / "elsewhere"
  elsewhere.mkdir()
  env = dict(os.environ, PYTHONPATH=str(site), JAX_PLATFORMS="cpu")

  def run(*args, ok=(0,)):
    result = subprocess.run([sys.executable, *args], cwd=elsewhere, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode in ok, result.stderr[-3000:]
    return result.stdout

  where = run("-c", "import irt_jax, configs; print(irt_jax.__file__); print(configs.__file__)")
  assert all(line.startswith(str(site)) for line in where.split())
  # the tools' default config is found beside the installed package, not in the cwd
  name = run("-c", "import importlib.util; from irt_jax import utils; "
                   "spec = importlib.util.spec_from_file_location('c', utils.config_file('synthetic')); "
                   "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module); "
                   "print(module.get_config().model.name)")
  assert name.strip() == "irtnet"
  for tool in ("route", "serve", "add-model", "update", "predict-benchmark", "train", "eval"):
    assert "<name>workdir</name>" in run("-m", "irt_jax", tool, "--helpxml", ok=(0, 1)), tool  # absl's exits 1
  listed = run("-m", "irt_jax", "--help")
  assert all(f"  {c} " in listed for c in ("train", "route", "add-model", "fetch-encoder", "predict-benchmark"))
