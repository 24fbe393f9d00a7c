"""Imports in irt_jax only run down: a module may import its own package or a lower
layer, never a higher one (an AST walk over every import, lazy ones included), and
no modules import each other in a circle, within a package either.

Layers, lowest first. The command-line tools at the top of irt_jax/ (route, serve,
add_model, update, benchmark_prediction) only wire flags to the packages below.
"""

import ast
import graphlib
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1] / "irt_jax"

LAYERS = [
    {"utils", "numerics", "metrics", "logs"},
    {"encoder"},
    {"data"},
    {"models"},
    {"checkpoint"},
    {"predictors"},
    {"training"},
    {"routing", "coldstart"},
    {"evaluation"},
    {"protocols"},
    {"serving"},
    {"route", "serve", "add_model", "update", "benchmark_prediction"},
]
LAYER = {name: i for i, names in enumerate(LAYERS) for name in names}


def unit(module: str) -> str:
  """The layer unit of a dotted irt_jax module: its top-level package or module."""
  return module.split(".")[1]


def imported_modules(path: pathlib.Path):
  tree = ast.parse(path.read_text(), str(path))
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      for alias in node.names:
        if alias.name.startswith("irt_jax."):
          yield node.lineno, alias.name
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
      if node.module == "irt_jax":
        for alias in node.names:
          yield node.lineno, f"irt_jax.{alias.name}"
      elif node.module.startswith("irt_jax."):
        yield node.lineno, node.module


def module_name(path: pathlib.Path, root: pathlib.Path | None = None) -> str:
  rel = path.relative_to((root or ROOT).parent).with_suffix("")
  parts = list(rel.parts)
  if parts[-1] == "__init__":
    parts.pop()
  return ".".join(parts)


def violations(root: pathlib.Path = ROOT):
  out = []
  for path in sorted(root.rglob("*.py")):
    me = module_name(path)
    if me == "irt_jax":
      continue
    mine = unit(me)
    for line, target in imported_modules(path):
      theirs = unit(target)
      if theirs == mine:
        continue
      if LAYER[theirs] >= LAYER[mine]:
        out.append(f"{path.relative_to(root.parent)}:{line} ({mine}, layer {LAYER[mine]}) "
                   f"imports {target} ({theirs}, layer {LAYER[theirs]})")
  return out


def test_every_unit_has_a_layer():
  units = {unit(module_name(p)) for p in ROOT.rglob("*.py") if module_name(p) != "irt_jax"}
  assert not sorted(units - set(LAYER)), "give each new package or module a layer here"


def test_imports_only_run_down():
  assert violations() == []


def test_an_upward_import_is_caught(tmp_path):
  pkg = tmp_path / "irt_jax"
  (pkg / "models").mkdir(parents=True)
  (pkg / "__init__.py").write_text("")
  (pkg / "models" / "__init__.py").write_text("")
  (pkg / "models" / "knn.py").write_text(
      "def f():\n  from irt_jax.evaluation import report\n")
  (pkg / "evaluation.py").write_text("from irt_jax.models import knn\n")
  global ROOT
  old, ROOT = ROOT, pkg
  try:
    found = violations(pkg)
  finally:
    ROOT = old
  assert len(found) == 1 and "models/knn.py:2" in found[0] and "irt_jax.evaluation" in found[0]


def import_graph(root: pathlib.Path = ROOT) -> dict[str, set[str]]:
  """module -> the irt_jax modules it imports (function-local imports included;
  `from package import module` is an edge to the module, not the package)."""
  paths = {module_name(p, root): p for p in root.rglob("*.py")}
  graph = {}
  for me, path in paths.items():
    edges = graph.setdefault(me, set())
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
      if isinstance(node, ast.Import):
        edges.update(a.name for a in node.names if a.name in paths)
      elif isinstance(node, ast.ImportFrom) and node.module in paths and node.level == 0:
        for alias in node.names:
          sub = f"{node.module}.{alias.name}"
          edges.add(sub if sub in paths else node.module)
    edges.discard(me)
  return graph


def import_cycle(root: pathlib.Path = ROOT) -> list[str] | None:
  """One circle of imports (its modules, the first repeated at the end), or None."""
  try:
    tuple(graphlib.TopologicalSorter(import_graph(root)).static_order())
  except graphlib.CycleError as e:
    return list(e.args[1])
  return None


def test_no_import_cycle():
  assert import_cycle() is None


def test_a_cycle_through_a_function_local_import_is_caught(tmp_path):
  pkg = tmp_path / "irt_jax"
  (pkg / "training").mkdir(parents=True)
  (pkg / "__init__.py").write_text("")
  (pkg / "training" / "__init__.py").write_text("")
  (pkg / "training" / "fitting.py").write_text("from irt_jax.training import members\n")
  (pkg / "training" / "members.py").write_text("import irt_jax.training.loop\n")
  (pkg / "training" / "loop.py").write_text(
      "def run():\n  from irt_jax.training import fitting\n")
  assert import_cycle(pkg) is not None
  assert set(import_cycle(pkg)) == {"irt_jax.training.fitting", "irt_jax.training.members",
                                    "irt_jax.training.loop"}
  (pkg / "training" / "loop.py").write_text("def run():\n  from irt_jax.training import batches\n")
  (pkg / "training" / "batches.py").write_text("")
  assert import_cycle(pkg) is None


if __name__ == "__main__":
  raise SystemExit(pytest.main([__file__]))
