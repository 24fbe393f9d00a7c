"""The command-line tools: one error base class, one dispatcher (`irt-jax <command>`,
`python -m irt_jax <command>`), shared flag definitions."""

import ast
import importlib
import pathlib
import subprocess
import sys

import pytest

from irt_jax.errors import UserError
from tests.conftest import REPO

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "irt_jax"
NOT_USER_ERRORS = {"ApiError"}     # an HTTP error answer of the service, not a tool's exit


def error_classes():
  """(module, class name) of every *Error class defined in irt_jax."""
  for path in sorted(PACKAGE.rglob("*.py")):
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    module = ".".join(p for p in rel.parts if p != "__init__")
    for node in ast.parse(path.read_text()).body:
      if isinstance(node, ast.ClassDef) and node.name.endswith("Error"):
        yield module, node.name


def test_every_error_class_of_the_library_is_a_user_error():
  found = list(error_classes())
  assert ("irt_jax.data.tables", "DataError") in found and len(found) >= 14
  for module, name in found:
    cls = getattr(importlib.import_module(module), name)
    assert issubclass(cls, UserError) == (name not in NOT_USER_ERRORS), f"{module}.{name}"


def test_the_old_bases_still_hold():
  from irt_jax.checkpoint import CheckpointError
  from irt_jax.data.io import DataError
  assert issubclass(DataError, ValueError) and issubclass(CheckpointError, RuntimeError)


def test_user_errors_end_the_tool_in_one_line(capsys):
  from irt_jax.cli import flags as cli_flags
  from irt_jax.data.io import DataError
  for error in (UserError("x.csv: row 3: label must be 0 or 1"), DataError("x.csv: empty"),
                ValueError("--ks must be positive")):
    with pytest.raises(SystemExit) as exit_:
      with cli_flags.user_errors("route"):
        raise error
    assert exit_.value.code == 1
    assert capsys.readouterr().err == f"route: {error}\n"
  with pytest.raises(OSError):                 # not a user's mistake unless the tool says so
    with cli_flags.user_errors("route"):
      raise OSError("disk full")
  with pytest.raises(SystemExit):
    with cli_flags.user_errors("serve", also=(OSError,)):
      raise OSError("upstreams.json: no such file")
  assert capsys.readouterr().err == "serve: upstreams.json: no such file\n"


def test_every_command_is_a_module_with_flags_and_main():
  from irt_jax import cli
  assert {"train", "eval", "route", "serve", "add-model", "update", "download", "encode",
          "fetch-encoder", "predict-benchmark", "distill", "build-data"} == set(cli.COMMANDS)
  for name, (module, _) in cli.COMMANDS.items():
    tool = importlib.import_module(f"irt_jax.cli.{module}")   # importing defines no flag
    assert callable(tool.define_flags) and callable(tool.main), name


def _irt_jax(*args):
  return subprocess.run([sys.executable, "-m", "irt_jax", *args], cwd=REPO, capture_output=True,
                        text=True, timeout=300)


def test_the_dispatcher_lists_the_commands_and_refuses_an_unknown_one():
  from irt_jax import cli
  listed = _irt_jax("--help")
  assert listed.returncode == 0
  commands = [line.split()[0] for line in listed.stdout.splitlines() if line.startswith("  ")]
  assert commands == list(cli.COMMANDS)
  wrong = _irt_jax("rout", "--workdir=x")
  assert wrong.returncode == 2 and "irt-jax: unknown command 'rout'" in wrong.stderr


def test_a_command_gets_its_own_flags_and_one_line_errors(tmp_path):
  done = _irt_jax("route", f"--workdir={tmp_path / 'none'}", "What is 2 + 2?")
  assert done.returncode == 1 and done.stderr.strip().splitlines()[-1] == (
      f"route: --workdir {tmp_path / 'none'} does not exist")
  bad = _irt_jax("update", "--workdir=x", "--port=1")       # serve's flag, not update's
  assert bad.returncode == 1 and "Unknown command line flag 'port'" in bad.stderr
  assert "Traceback" not in done.stderr + bad.stderr
