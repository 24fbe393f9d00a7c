"""The command-line tools: one error base class, one dispatcher (`irt-jax <command>`,
`python -m irt_jax <command>`), shared flag definitions."""

import ast
import importlib
import pathlib

from irt_jax.errors import UserError

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
  assert ("irt_jax.data.io", "DataError") in found and len(found) >= 14
  for module, name in found:
    cls = getattr(importlib.import_module(module), name)
    assert issubclass(cls, UserError) == (name not in NOT_USER_ERRORS), f"{module}.{name}"


def test_the_old_bases_still_hold():
  from irt_jax.checkpoint import CheckpointError
  from irt_jax.data.io import DataError
  assert issubclass(DataError, ValueError) and issubclass(CheckpointError, RuntimeError)
