"""Imports in irt_jax only run down: a module may import its own package or a lower
layer, never a higher one (an AST walk over every import, lazy ones included), and
no modules import each other in a circle, within a package either.

Layers, lowest first. The command-line tools (irt_jax/cli/, run as `irt-jax <command>` or
`python -m irt_jax <command>` through irt_jax/__main__.py) only wire flags to the packages
below.
benchmarks (benchmark-score prediction, its protocol included) sits under
evaluation, whose evaluator registry lists its report section.
"""

import ast
import graphlib
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1] / "irt_jax"

LAYERS = [
    {"errors"},
    {"utils", "numerics", "metrics", "logs", "plotting"},
    {"encoder"},
    {"data"},
    {"models"},
    {"checkpoint"},
    {"predictors"},
    {"training"},
    {"routing", "coldstart"},
    {"benchmarks"},
    {"evaluation"},
    {"protocols"},
    {"serving"},
    {"cli"},
    {"__main__"},
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


# ---------------------------------------------------------------- experiments/ above irt_jax

REPO = ROOT.parent
EXPERIMENTS = REPO / "experiments"
PATH_HACK = "sys.path" + ".insert"          # spelt apart so this file does not hold it


def _private(name: str) -> bool:
  return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_uses(path: pathlib.Path) -> list[str]:
  """Private irt_jax names an experiments file reaches: `from irt_jax.x import _y`, a
  module `irt_jax._x`, or an attribute `obj._y` of anything but self / cls."""
  tree = ast.parse(path.read_text(), str(path))
  out = []
  for node in ast.walk(tree):
    if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("irt_jax"):
      names = node.module.split(".") + [a.name for a in node.names]
      out += [f"{path.name}:{node.lineno} imports {n}" for n in names if _private(n)]
    elif isinstance(node, ast.Import):
      out += [f"{path.name}:{node.lineno} imports {a.name}" for a in node.names
              if a.name.startswith("irt_jax") and any(map(_private, a.name.split(".")))]
    elif isinstance(node, ast.Attribute) and _private(node.attr):
      if not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
        out.append(f"{path.name}:{node.lineno} reads .{node.attr}")
  return out


def test_experiments_use_the_public_api_only():
  files = sorted(EXPERIMENTS.rglob("*.py"))
  assert len(files) >= 18 and (EXPERIMENTS / "bench" / "run.py") in files
  assert [u for f in files for u in private_uses(f)] == []


def _imported_names(node) -> list[str]:
  return [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]


def test_irt_jax_never_imports_experiments():
  found = [f"{p.relative_to(REPO)}:{n.lineno}" for p in sorted(ROOT.rglob("*.py"))
           for n in ast.walk(ast.parse(p.read_text()))
           if isinstance(n, (ast.Import, ast.ImportFrom))
           and any(name.startswith("experiments") for name in _imported_names(n))]
  assert found == []


def test_no_file_edits_sys_path():
  files = [p for d in ("irt_jax", "experiments", "tests", "configs")
           for p in (REPO / d).rglob("*.py")]
  files += list(REPO.glob("*.py"))
  assert len(files) > 100
  assert [str(p.relative_to(REPO)) for p in files if PATH_HACK in p.read_text()] == []


def test_a_private_use_in_an_experiment_is_caught(tmp_path):
  planted = tmp_path / "x.py"
  planted.write_text("from irt_jax.encoder.sentence_encoder import _checked_texts\n"
                     "import irt_jax._hidden\n"
                     "class A:\n  def f(self, enc):\n    self._ok = 1\n    return enc._plan(1)\n")
  assert private_uses(planted) == ["x.py:1 imports _checked_texts",
                                   "x.py:2 imports irt_jax._hidden", "x.py:6 reads ._plan"]


if __name__ == "__main__":
  raise SystemExit(pytest.main([__file__]))


# ---------------------------------------------------------------- sizes a reader can hold

MAX_MODULE_LINES = 400


def long_modules(root: pathlib.Path = ROOT, limit: int = MAX_MODULE_LINES) -> list[str]:
  """irt_jax modules over `limit` lines (experiments/ is exempt: one job a file)."""
  return [f"{p.relative_to(root.parent)}: {n} lines" for p in sorted(root.rglob("*.py"))
          if (n := len(p.read_text().splitlines())) > limit]


def test_no_module_over_the_limit():
  assert long_modules() == []


def test_a_long_module_is_caught(tmp_path):
  pkg = tmp_path / "irt_jax"
  pkg.mkdir()
  (pkg / "short.py").write_text("x = 1\n" * MAX_MODULE_LINES)
  (pkg / "long.py").write_text("x = 1\n" * (MAX_MODULE_LINES + 1))
  assert long_modules(pkg) == [f"irt_jax/long.py: {MAX_MODULE_LINES + 1} lines"]
