"""The docs cannot drift from the code: every command, flag, file, module and
function that README.md and docs/*.md name must exist.

Commands (`python train.py ...`, `irt-jax route ...`, `.venv/bin/python -m irt_jax route ...`,
`python -m experiments.bench.run ...`) are parsed: the script or module must exist, and each `--flag`
must be one its entry point defines, read from the entry point's own help (absl's
`--helpxml`, argparse's `--help`) in a subprocess, once per entry point;
`--config.x.y=...` overrides must name a field of the config file the command
passes (or the entry point's default). Backticked references are resolved: repo
paths (`irt_jax/...`, `tests/...`), dotted names (`irt_jax.routing.rules`,
`rules.choose_with_cost`, `Router.from_checkpoint`) by import, config fields
(`train.batching`) against the configs. The pages also describe the present (the
conventions are stated above the checks that enforce them): tables have header rows,
"above"/"below" point the right way, links name existing headings, and there are no
machine paths, no history (issue numbers, sessions, times of day) and no page over
350 lines. Each check is also run on a planted error, so a checker that accepts
everything fails here.
"""

from __future__ import annotations

import ast
import concurrent.futures
import functools
import glob
import importlib
import importlib.util
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = ["README.md"] + sorted(os.path.relpath(p, REPO) for p in glob.glob(os.path.join(REPO, "docs", "*.md")))
PATH_PREFIXES = ("irt_jax", "tests", "experiments", "configs", "docs", ".ci")
FILE_EXTENSIONS = {"json", "jsonl", "csv", "npy", "npz", "py", "md", "png", "txt", "safetensors", "sh", "toml",
                   "ini", "yaml", "cfg", "html", "xml", "bin", "pt", "log"}


# ---------------------------------------------------------------- extraction

def read(doc: str) -> str:
  with open(os.path.join(REPO, doc), encoding="utf-8") as f:
    return f.read()


def split_markdown(text: str) -> tuple[list[tuple[str, str]], str]:
  """(fenced blocks as (language, body), the prose outside them)."""
  blocks, prose, lines, lang, inside = [], [], [], "", False
  for line in text.splitlines():
    if line.lstrip().startswith("```"):
      if inside:
        blocks.append((lang, "\n".join(lines)))
        lines, inside = [], False
      else:
        lang, inside = line.lstrip()[3:].strip(), True
      continue
    (lines if inside else prose).append(line)
  return blocks, "\n".join(prose)


def inline_spans(prose: str) -> list[str]:
  return re.findall(r"`([^`\n]+)`", prose)


def logical_lines(body: str) -> list[str]:
  """Shell lines with backslash continuations joined and comments dropped."""
  out, current = [], ""
  for line in body.splitlines():
    line = re.sub(r"(^|\s)#.*$", "", line)
    if line.rstrip().endswith("\\"):
      current += line.rstrip()[:-1] + " "
      continue
    out.append(current + line)
    current = ""
  if current:
    out.append(current)
  return out


def expand_variables(lines: list[str]) -> list[str]:
  """Substitutes `NAME="..."` assignments made earlier in the block (e.g. $ARGS)."""
  values, out = {}, []
  for line in lines:
    m = re.match(r'\s*(?:export\s+)?([A-Z_][A-Z0-9_]*)="([^"]*)"\s*$', line)
    if m:
      values[m.group(1)] = m.group(2)
    out.append(re.sub(r"\$\{?([A-Z_][A-Z0-9_]*)\}?", lambda v: values.get(v.group(1), v.group(0)), line))
  return out


def commands_in(line: str) -> list[list[str]]:
  """The python invocations in one shell line, each as [entry, args...] where entry
  is a script path or `-m module`. Segments are split at shell separators and quotes;
  a segment that starts with a repo script (`experiments/bench/run.py --quick`) counts too."""
  found = []
  for segment in re.split(r"&&|\|\||;|\||\"|'", line):
    segment = segment.strip()
    m = re.search(r"(?:^|\s)(?:[\w./-]*/)?python3?(?:\s+(.*))?$", segment)
    tool = re.search(r"(?:^|\s)(?:[\w./-]*/)?irt-jax\s+(.*)$", segment)
    if m:
      words = (m.group(1) or "").split()
    elif tool:                                    # the installed console script
      words = ["-m", "irt_jax"] + tool.group(1).split()
    elif re.match(r"[\w./-]+\.py(\s|$)", segment) and os.path.isfile(os.path.join(REPO, segment.split()[0])):
      words = segment.split()
    else:
      continue
    words = [w.strip("[]") for w in words if w.strip("[]")]
    if words and words[0] == "-m" and words[1:2] == ["irt_jax"]:   # python -m irt_jax <command>
      if len(words) > 2 and re.fullmatch(r"[a-z][a-z-]*", words[2]):  # not --help, <command>
        found.append(["-m irt_jax " + words[2]] + words[3:])
    elif words and words[0] == "-m" and len(words) > 1:
      found.append(["-m " + words[1]] + words[2:])
    elif words and words[0].endswith(".py"):
      found.append(words)
  return found


def doc_commands(text: str) -> list[list[str]]:
  blocks, prose = split_markdown(text)
  commands = []
  for lang, body in blocks:
    if lang in ("", "bash", "sh", "shell", "console"):
      for line in expand_variables(logical_lines(body)):
        commands += commands_in(re.sub(r"^\s*\$\s+", "", line))
  for span in inline_spans(prose):
    commands += commands_in(span)
  return commands


def shell_scripts(text: str) -> list[str]:
  return re.findall(r"(?:^|\s)(?:bash|sh)\s+([\w./-]+\.sh)", text, re.M)


# ---------------------------------------------------------------- entry points

def entry_file(entry: str) -> str | None:
  """The file an entry point runs (for `-m irt_jax <command>`, the command's module in
  irt_jax/cli/), or None if it does not exist."""
  if entry.startswith("-m irt_jax "):
    from irt_jax import cli
    command = cli.COMMANDS.get(entry.split()[2])
    return os.path.join(REPO, "irt_jax", "cli", command[0] + ".py") if command else None
  if entry.startswith("-m experiments"):
    spec = importlib.util.find_spec(entry[3:])
    return spec.origin if spec else None
  if entry.startswith("-m "):
    spec = importlib.util.find_spec(entry[3:]) if entry[3:].split(".")[0] == "irt_jax" else None
    return spec.origin if spec else None
  path = os.path.join(REPO, entry)
  return path if os.path.isfile(path) else None


def _help_command(entry: str, path: str) -> list[str]:
  with open(path, encoding="utf-8") as f:
    uses_argparse = "argparse" in f.read()
  if entry.startswith("experiments/"):             # a package's file: run as its module
    entry = "-m " + entry[:-3].replace("/", ".")
  target = ["-m", *entry[3:].split()] if entry.startswith("-m ") else [path]
  return [sys.executable, *target, "--help" if uses_argparse else "--helpxml"]


def parse_help(output: str) -> dict[str, str | None]:
  """Flag name -> default, from absl's XML help or argparse's text help."""
  start = output.find("<?xml")
  if start >= 0:
    root = ET.fromstring(output[start:])
    return {flag.findtext("name"): flag.findtext("default") for flag in root.iter("flag")}
  names = re.findall(r"^\s+(?:-\w[\w-]*,\s*)?--([A-Za-z_][\w-]*)", output, re.M)
  return {name: None for name in names} | {"help": None}


@functools.lru_cache(maxsize=None)
def entry_flags(entry: str) -> dict[str, str | None]:
  path = entry_file(entry)
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="")
  result = subprocess.run(_help_command(entry, path), cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)
  flags = parse_help(result.stdout)
  assert flags, f"{entry} --help printed no flags: {result.stderr[-2000:]}"
  if "config" in flags:                          # absl's help prints the loaded config, not its path
    with open(path, encoding="utf-8") as f:
      source = f.read()
    tool = re.search(r'cli\.run_tool\("(\w+)"', source)    # train.py / eval.py: irt_jax/cli/<tool>.py
    if tool:
      with open(os.path.join(REPO, "irt_jax", "cli", tool.group(1) + ".py"), encoding="utf-8") as f:
        source = f.read()
    literal = re.search(r'DEFINE_config_file\(\s*"config",\s*"([^"]+)"', source)
    named = re.search(r'DEFINE_config_file\(\s*"config",\s*utils\.config_file\("(\w+)"\)', source)
    flags["config"] = literal.group(1) if literal else f"configs/{named.group(1)}.py" if named else None
  return flags


def load_config(path: str):
  spec = importlib.util.spec_from_file_location("doc_config", os.path.join(REPO, path))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def has_field(config, dotted: str) -> bool:
  node = config
  for key in dotted.split("."):
    try:
      node = node[key]
    except (KeyError, TypeError, AttributeError):
      return False
  return True


def command_errors(command: list[str], flags_of=entry_flags) -> list[str]:
  """What is wrong with one documented command (empty if nothing)."""
  entry, args = command[0], command[1:]
  if entry == "-m pytest":
    return [f"pytest path {a} does not exist" for a in args
            if a.startswith("tests/") and not os.path.exists(os.path.join(REPO, a.split("::")[0]))]
  if entry.startswith("-m ") and not entry.startswith(("-m irt_jax", "-m experiments")):
    return []                                     # python -m venv, pip, ...
  if entry_file(entry) is None:
    return [f"{entry}: no such script or module"]
  flags = flags_of(entry)
  errors, overrides, config_file = [], [], flags.get("config")
  for arg in args:
    if not arg.startswith("--") or arg in ("--",):
      continue
    name, _, value = arg[2:].partition("=")
    if name.startswith("config.") and "config" in flags:
      overrides.append(name[len("config."):])
    elif name == "config":
      config_file = value
    elif name not in flags and not (name.startswith("no") and name[2:] in flags):
      errors.append(f"{entry}: unknown flag --{name}")
  if overrides and config_file:
    if not os.path.isfile(os.path.join(REPO, config_file)):
      return errors + [f"{entry}: config file {config_file} does not exist"]
    config = load_config(config_file)
    errors += [f"{entry}: {config_file} has no field {o}" for o in overrides if not has_field(config, o)]
  return errors


# ---------------------------------------------------------------- references

@functools.lru_cache(maxsize=None)
def package_index() -> tuple[dict[str, list[str]], dict[str, list[str]]]:
  """Short module name -> full names, and class name -> defining modules, in irt_jax."""
  modules, classes = {}, {}
  for path in glob.glob(os.path.join(REPO, "irt_jax", "**", "*.py"), recursive=True):
    rel = os.path.relpath(path, REPO)[:-3].replace(os.sep, ".")
    full = rel[:-len(".__init__")] if rel.endswith(".__init__") else rel
    modules.setdefault(full.split(".")[-1], []).append(full)
    with open(path, encoding="utf-8") as f:
      tree = ast.parse(f.read())
    for node in tree.body:
      if isinstance(node, ast.ClassDef):
        classes.setdefault(node.name, []).append(full)
  return modules, classes


@functools.lru_cache(maxsize=None)
def config_fields() -> frozenset[str]:
  """Every field path of every configs/*.py (data.dir, train.batching, ...)."""
  fields = set()

  def walk(node, prefix):
    for key in node.keys():
      fields.add(prefix + key)
      if hasattr(node[key], "keys"):
        walk(node[key], prefix + key + ".")
  for path in glob.glob(os.path.join(REPO, "configs", "*.py")):
    if not path.endswith("__init__.py"):
      walk(load_config(os.path.relpath(path, REPO)), "")
  return frozenset(fields)


def _module_file(module: str) -> str | None:
  base = os.path.join(REPO, *module.split("."))
  for path in (base + ".py", os.path.join(base, "__init__.py")):
    if os.path.isfile(path):
      return path
  return None


@functools.lru_cache(maxsize=None)
def _names(path: str) -> dict[str, ast.AST | None]:
  """Top-level names a module defines or imports (a class maps to its node)."""
  with open(path, encoding="utf-8") as f:
    return _body_names(ast.parse(f.read()).body)


def _body_names(body) -> dict[str, ast.AST | None]:
  names = {}
  for node in body:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
      names[node.name] = None
    elif isinstance(node, ast.ClassDef):
      names[node.name] = node
    elif isinstance(node, (ast.Import, ast.ImportFrom)):
      names.update({(a.asname or a.name).split(".")[0]: None for a in node.names})
    elif isinstance(node, (ast.Assign, ast.AnnAssign)):
      targets = node.targets if isinstance(node, ast.Assign) else [node.target]
      names.update({t.id: None for t in targets if isinstance(t, ast.Name)})
  return names


def resolves(module: str, attrs: list[str]) -> bool:
  """Whether irt_jax module `module` (or a submodule named by a prefix of `attrs`)
  has the attribute chain `attrs`, read from the source (importing the tools would
  define their absl flags twice over)."""
  path = _module_file(module)
  for i, attr in enumerate(attrs):
    if path is None:
      return False
    sub = _module_file(module + "." + ".".join(attrs[:i + 1]))
    if sub:
      path = sub
      continue
    names = _names(path)
    if attr not in names:
      return False
    node = names[attr]
    if isinstance(node, ast.ClassDef) and i + 1 < len(attrs):
      return attrs[i + 1] in _body_names(node.body)
    return True
  return path is not None


def reference_error(span: str) -> str | None:
  """Why a backticked dotted name does not resolve, or None (also for names that
  are not this project's: jax.*, a variable's attribute, a file name)."""
  name = re.sub(r"\(.*\)$", "", span.strip())
  if not re.fullmatch(r"[A-Za-z_]\w*(\.\w+)+", name) or name.rsplit(".", 1)[1] in FILE_EXTENSIONS:
    return None
  parts = name.split(".")
  modules, classes = package_index()
  if parts[0] == "irt_jax":
    candidates = [(".".join(parts[:2]), parts[2:])]
  elif parts[0] in modules:
    candidates = [(full, parts[1:]) for full in modules[parts[0]]]
  elif parts[0] in classes:
    candidates = [(full, parts) for full in classes[parts[0]]]
  elif parts[0] in {f.split(".")[0] for f in config_fields()}:
    candidates = []
  else:
    return None
  if any(resolves(module, attrs) for module, attrs in candidates) or name in config_fields():
    return None
  return f"`{span}` names nothing in irt_jax or configs/"


def path_errors(text: str) -> list[str]:
  pattern = r"(?<![\w/.$-])((?:%s)/[\w./-]*)" % "|".join(re.escape(p) for p in PATH_PREFIXES)
  errors = []
  for path in set(re.findall(pattern, text)):
    path = path.rstrip(".,:;")
    if not os.path.exists(os.path.join(REPO, path)):
      errors.append(f"{path} does not exist")
  return errors


def import_errors(text: str) -> list[str]:
  """`from irt_jax... import X` lines of python blocks must import."""
  errors = []
  blocks, _ = split_markdown(text)
  for lang, body in blocks:
    if lang != "python":
      continue
    for module, names in re.findall(r"^\s*from\s+(irt_jax[\w.]*)\s+import\s+([\w, ]+)", body, re.M):
      for name in (n.strip() for n in names.split(",")):
        if not resolves(module, [name]):
          errors.append(f"from {module} import {name} fails")
  return errors


def reference_errors(text: str) -> list[str]:
  _, prose = split_markdown(text)
  errors = [e for e in map(reference_error, inline_spans(prose)) if e]
  errors += path_errors(text) + import_errors(text)
  errors += [f"{s} does not exist" for s in shell_scripts(text) if not os.path.isfile(os.path.join(REPO, s))]
  return sorted(set(errors))


# ---------------------------------------------------------------- the tests

def all_commands() -> list[tuple[str, list[str]]]:
  return [(doc, command) for doc in DOCS for command in doc_commands(read(doc))]


def test_the_docs_show_commands_of_each_tool():
  entries = {command[0] for _, command in all_commands()}
  for entry in ("train.py", "eval.py", "-m irt_jax route", "-m irt_jax serve", "-m irt_jax add-model",
                "-m irt_jax predict-benchmark", "-m experiments.compare_kinds", "-m experiments.bench.run"):
    assert entry in entries, f"no command of {entry} found in the docs: the extraction misses them"


@pytest.mark.slow
def test_every_documented_command_uses_flags_its_entry_point_defines():
  commands = all_commands()
  entries = sorted({c[0] for _, c in commands
                    if c[0].startswith(("-m irt_jax", "-m experiments")) or c[0].endswith(".py")})
  entries = [e for e in entries if entry_file(e)]
  with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
    list(pool.map(entry_flags, entries))         # fills the cache, one help run per entry point
  errors = [f"{doc}: {e}" for doc, command in commands for e in command_errors(command)]
  assert not errors, "\n".join(errors)


def test_every_documented_file_module_and_function_exists():
  errors = [f"{doc}: {e}" for doc in DOCS for e in reference_errors(read(doc))]
  assert not errors, "\n".join(errors)


# ---------------------------------------------------------------- the checks catch planted errors

FAKE_FLAGS = {"-m irt_jax route": {"workdir": None, "json": None, "help": None},
              "train.py": {"config": "configs/synthetic.py", "workdir": None}}


def test_a_planted_unknown_flag_or_config_field_or_script_is_caught():
  text = ("```bash\n.venv/bin/python -m irt_jax route --workdir=runs/x \\\n    --no_such_flag=1 --nojson\n"
          "python train.py --config=configs/irtnet.py --config.model.no_such_field=3 --config.optim.lr=1e-3\n"
          ".venv/bin/python -m experiments.no_such_script --x=1\n"
          "irt-jax route --workdir=runs/x --other_flag=2\n.venv/bin/irt-jax no-such-command --x=1\n```\n")
  commands = doc_commands(text)
  assert [c[0] for c in commands] == ["-m irt_jax route", "train.py", "-m experiments.no_such_script",
                                      "-m irt_jax route", "-m irt_jax no-such-command"]
  errors = [e for c in commands for e in command_errors(c, flags_of=FAKE_FLAGS.get)]
  assert errors == ["-m irt_jax route: unknown flag --no_such_flag",
                    "train.py: configs/irtnet.py has no field model.no_such_field",
                    "-m experiments.no_such_script: no such script or module",
                    "-m irt_jax route: unknown flag --other_flag",
                    "-m irt_jax no-such-command: no such script or module"]


def test_a_config_override_is_checked_against_the_default_config():
  command = doc_commands("`train.py --config.model.no_such_field=1 --config.data.dir=x`")
  assert command == [["train.py", "--config.model.no_such_field=1", "--config.data.dir=x"]]
  assert command_errors(command[0], flags_of=FAKE_FLAGS.get) == [
      "train.py: configs/synthetic.py has no field model.no_such_field"]


def test_a_planted_missing_function_module_or_path_is_caught():
  good = ("`irt_jax.routing.rules.choose_with_cost` and `rules.choose_under_budget(logits, ...)`, "
          "`models.irtnet.expert_hidden`, `Router.from_checkpoint`, `train.batching`, `data.dir`, "
          "`irt_jax/routing/rules.py`, `report.json`, `jax.random.bernoulli`, `kind.irt`\n"
          "```python\nfrom irt_jax.routing.router import Router\n```\nbash experiments/paper_results.sh\n")
  assert reference_errors(good) == []
  bad = ("`irt_jax.routing.rules.choose_by_magic`, `models.irtnet.expert_mlps`, `Router.no_such_method`, "
         "`train.no_such_field`, `irt_jax/routing.py`\n"
         "```python\nfrom irt_jax.routing import route_all\n```\nbash experiments/no_such.sh\n")
  errors = reference_errors(bad)
  assert sorted(errors) == sorted([
      "`irt_jax.routing.rules.choose_by_magic` names nothing in irt_jax or configs/",
      "`models.irtnet.expert_mlps` names nothing in irt_jax or configs/",
      "`Router.no_such_method` names nothing in irt_jax or configs/",
      "`train.no_such_field` names nothing in irt_jax or configs/",
      "irt_jax/routing.py does not exist",
      "from irt_jax.routing import route_all fails",
      "experiments/no_such.sh does not exist"])


def test_help_of_absl_and_argparse_entry_points_is_parsed():
  xml = ('junk\n<?xml version="1.0"?>\n<AllFlags><program>x</program><flag><file>a</file><name>workdir</name>'
         '<default>runs/x</default></flag><flag><name>json</name><default>false</default></flag></AllFlags>')
  assert parse_help(xml) == {"workdir": "runs/x", "json": "false"}
  argparse_help = ("usage: run.py [-h] [--quick]\n\noptions:\n  -h, --help  show\n  --quick     CI-sized\n"
                   "  --only ONLY  items\n")
  assert set(parse_help(argparse_help)) == {"help", "quick", "only"}


# ---------------------------------------------------------------- the docs describe the present
#
# Conventions the checks below enforce (a planted case of each follows):
# - every Markdown table starts with a header row, then a separator row (`|---|...`) with as many cells, and no
#   row has more cells than the header;
# - "the table below" (or figure, plot, chart; up to two words between "the" and the noun) is followed by one
#   before the next heading, "the table above" preceded by one since the previous heading: a table elsewhere is
#   named by its section. A section is named as `"Heading" above|below` or with a link `[...](#anchor)`, and must
#   be where the word says; every in-page link names a heading of the page;
# - no absolute machine path (/work/, /tmp/, /home/, /root/, /Users/, /mnt/, /scratch/) in README, docs, the
#   docstrings of the code outside tests/, or configs/;
# - no history in README, docs or those docstrings: no "session", "this stop", time of day in UTC, SIGSTOP,
#   issue number ("issue 21", "#21"). History lives in CHANGELOG.md (not checked for it) and commit messages.
#   Rule for upstream trackers: a number is allowed when the project's name is written right before it
#   ("RouteLLM #36", "lm-sys/RouteLLM#36");
# - no page over MAX_PAGE_LINES lines (files a command generates under docs/results/ are records, not pages).

MAX_PAGE_LINES = 350
GENERATED = sorted(os.path.relpath(p, REPO) for p in glob.glob(os.path.join(REPO, "docs", "results", "*.md")))
MACHINE_PATH = re.compile(r"(?<![\w.~$-])/(?:work|tmp|home|root|Users|mnt|scratch)/")
HISTORY = re.compile(r"\bsessions?\b|\bthis stop\b|\bSIGSTOP\b|\b\d{1,2}:\d{2}(?:[-–]\d{1,2}:\d{2})?\s*UTC\b"
                     r"|\bissues?\s+#?\d+|(?<![\w/#])#\d+\b", re.I)
UPSTREAM_TRACKER = re.compile(r"(?:\b[A-Z][\w.-]*[A-Z][\w.-]*\s+|[\w.-]+/[\w.-]+)#\d+\b")
REFERENCE = re.compile(r"\bthe\s+(?:[\w-]+\s+){0,2}?(tables?|figures?|plots?|charts?)\s+(above|below)\b", re.I)


def prose_lines(text: str) -> list[tuple[int, str]]:
  """(line number, line) outside fenced code blocks."""
  out, inside = [], False
  for i, line in enumerate(text.splitlines()):
    if line.lstrip().startswith("```"):
      inside = not inside
      continue
    if not inside:
      out.append((i, line))
  return out


def table_cells(line: str) -> list[str]:
  line = re.sub(r"`[^`]*`", "code", line.strip())           # a | inside code is not a cell border
  return [c.strip() for c in re.split(r"(?<!\\)\|", line.strip("|"))]


def is_row(line: str) -> bool:
  return line.strip().startswith("|") and line.strip().endswith("|") and len(line.strip()) > 1


def tables(text: str) -> list[tuple[int, int]]:
  """(first line, last line) of each Markdown table: a run of lines that start and end with |."""
  spans, start, previous = [], None, None
  for i, line in prose_lines(text):
    if is_row(line) and previous == i - 1 and start is not None:
      previous = i
      continue
    if start is not None:
      spans.append((start, previous))
      start = None
    if is_row(line):
      start = previous = i
  if start is not None:
    spans.append((start, previous))
  return spans


def table_errors(text: str) -> list[str]:
  lines, errors = text.splitlines(), []
  separator = re.compile(r"^:?-{3,}:?$")
  for start, end in tables(text):
    header = table_cells(lines[start])
    second = table_cells(lines[start + 1]) if end > start else []
    if any(separator.match(c) for c in header) or not second or not all(separator.match(c) for c in second):
      errors.append(f"line {start + 1}: table without a header row and separator ({lines[start][:60]})")
      continue
    if len(second) != len(header):
      errors.append(f"line {start + 2}: separator has {len(second)} cells, header {len(header)}")
    errors += [f"line {i + 1}: row has {len(table_cells(lines[i]))} cells, header {len(header)}"
               for i in range(start + 2, end + 1) if len(table_cells(lines[i])) > len(header)]
  return errors


def slug(heading: str) -> str:
  """GitHub's anchor of a heading."""
  text = re.sub(r"[`*_]", "", heading.strip().lstrip("#").strip()).lower()
  return re.sub(r"\s", "-", re.sub(r"[^\w\s-]", "", text))


def direction_errors(text: str) -> list[str]:
  lines = prose_lines(text)
  headings = [(i, line.lstrip("#").strip()) for i, line in lines if re.match(r"#{1,6}\s", line)]
  anchors = {slug(h): i for i, h in headings}
  names = {re.sub(r"[`*]", "", h).lower(): i for i, h in headings}
  table_spans = tables(text)
  images = [i for i, line in lines if "![" in line]
  errors = []

  def section(i):
    before = [h for h, _ in headings if h < i]
    after = [h for h, _ in headings if h > i]
    return (before[-1] if before else -1), (after[0] if after else len(text.splitlines()))

  def placed(target, i, word):
    return target > i if word == "below" else target < i

  for i, line in lines:
    if re.match(r"#{1,6}\s", line):
      continue
    for m in REFERENCE.finditer(line):
      noun, word = m.group(1).lower(), m.group(2).lower()
      top, bottom = section(i)
      spans = [(s, e) for s, e in table_spans] if noun.startswith("table") else []
      spans += [(k, k) for k in images] if not noun.startswith("table") else []
      if noun.startswith("figure"):
        spans = [(s, e) for s, e in table_spans] + [(k, k) for k in images]
      ok = any(i < s < bottom for s, _ in spans) if word == "below" else any(top < e < i for _, e in spans)
      if not ok:
        errors.append(f"line {i + 1}: \"{m.group(0)}\" but no {noun.rstrip('s')} {word} it in its section")
    for m in re.finditer(r"\[([^\]]*)\]\(#([^)\s]+)\)(\s+(?:above|below)\b)?", line):
      if m.group(2) not in anchors:
        errors.append(f"line {i + 1}: link to #{m.group(2)}, which no heading of the page has")
        continue
      word = re.search(r"\b(above|below)\b", m.group(1) + (m.group(3) or ""))
      if word and not placed(anchors[m.group(2)], i, word.group(1)):
        errors.append(f"line {i + 1}: #{m.group(2)} is not {word.group(1)}")
    for m in re.finditer(r"\"([^\"]+)\"\s+(above|below)\b", line):
      name = re.sub(r"[`*]", "", m.group(1)).lower()
      if name in names and not placed(names[name], i, m.group(2)):
        errors.append(f"line {i + 1}: section \"{m.group(1)}\" is not {m.group(2)}")
  return errors


def page_anchors(doc: str) -> set[str]:
  return {slug(line) for _, line in prose_lines(read(doc)) if re.match(r"#{1,6}\s", line)}


def cross_page_anchor_errors(doc: str, text: str, anchors_of=page_anchors) -> list[str]:
  """`[...](other.md#anchor)` must name a heading of that page (a renamed heading breaks the link)."""
  errors = []
  for target, anchor in re.findall(r"\]\(([\w./-]+\.md)#([^)\s]+)\)", text):
    path = os.path.normpath(os.path.join(os.path.dirname(doc), target))
    if not os.path.isfile(os.path.join(REPO, path)):
      errors.append(f"link to {target}, which does not exist")
    elif anchor not in anchors_of(path):
      errors.append(f"link to {target}#{anchor}, which no heading of {path} has")
  return errors


def machine_path_errors(text: str) -> list[str]:
  return [f"line {text.count(chr(10), 0, m.start()) + 1}: absolute machine path "
          f"{text[m.start():m.start() + 30].split()[0]}" for m in MACHINE_PATH.finditer(text)]


def history_errors(text: str) -> list[str]:
  allowed = {m.end() for m in UPSTREAM_TRACKER.finditer(text)}
  return [f"line {text.count(chr(10), 0, m.start()) + 1}: history in a manual: \"{m.group(0)}\""
          for m in HISTORY.finditer(text) if m.end() not in allowed]


def code_files() -> list[str]:
  """Python files whose docstrings are user-facing: everything outside tests/ and ignored folders."""
  paths = glob.glob(os.path.join(REPO, "*.py")) + glob.glob(os.path.join(REPO, "**", "*.py"), recursive=True)
  skip = ("tests", ".venv", ".models", "runs", "build", "data")
  return sorted({os.path.relpath(p, REPO) for p in paths
                 if os.path.relpath(p, REPO).split(os.sep)[0] not in skip and "site-packages" not in p})


def docstrings(path: str) -> str:
  with open(os.path.join(REPO, path), encoding="utf-8") as f:
    tree = ast.parse(f.read())
  nodes = [n for n in ast.walk(tree) if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef,
                                                       ast.AsyncFunctionDef))]
  return "\n".join(d for d in (ast.get_docstring(n, clean=False) for n in nodes) if d)


def test_every_table_has_a_header_row():
  errors = [f"{doc}: {e}" for doc in DOCS + GENERATED for e in table_errors(read(doc))]
  assert not errors, "\n".join(errors)


def test_above_and_below_point_the_right_way():
  errors = [f"{doc}: {e}" for doc in DOCS for e in direction_errors(read(doc))]
  assert not errors, "\n".join(errors)


def test_links_to_another_page_name_one_of_its_headings():
  errors = [f"{doc}: {e}" for doc in DOCS for e in cross_page_anchor_errors(doc, read(doc))]
  assert not errors, "\n".join(errors)


def test_no_absolute_machine_paths():
  texts = {doc: read(doc) for doc in DOCS + GENERATED + ["CHANGELOG.md"] if os.path.exists(os.path.join(REPO, doc))}
  texts |= {path: docstrings(path) for path in code_files()}
  texts |= {os.path.relpath(p, REPO): read(os.path.relpath(p, REPO))
            for p in glob.glob(os.path.join(REPO, "configs", "*.py"))}
  errors = [f"{name}: {e}" for name, text in texts.items() for e in machine_path_errors(text)]
  assert not errors, "\n".join(errors)


def test_no_history_in_docs_or_docstrings():
  texts = {doc: read(doc) for doc in DOCS + GENERATED} | {path: docstrings(path) for path in code_files()}
  errors = [f"{name}: {e}" for name, text in texts.items() for e in history_errors(text)]
  assert not errors, "\n".join(errors)


def test_no_page_is_over_the_length_limit():
  long = [f"{doc}: {len(read(doc).splitlines())} lines" for doc in DOCS
          if len(read(doc).splitlines()) > MAX_PAGE_LINES]
  assert not long, f"pages over {MAX_PAGE_LINES} lines (move generated tables to docs/results/): {long}"


# ---------------------------------------------------------------- ... and catch planted drift

def test_a_table_without_a_header_row_is_caught():
  good = ("text\n\n| a | b |\n|---|---|\n| 1 | `x|y` |\n\n```\n| not | a table |\n```\n"
          "- a list item that wraps\n  |a|^2 = 1, prose\n")
  assert table_errors(good) == []
  headless = "| 1 | s8 | 4.94 |\n| 2 | s4 | 5.00 |\n"
  assert table_errors(headless) == ["line 1: table without a header row and separator (| 1 | s8 | 4.94 |)"]
  separator_first = "|---|---|\n| 1 | 2 |\n"
  assert len(table_errors(separator_first)) == 1
  too_wide = "| a | b |\n|---|---|\n| 1 | 2 | 3 |\n"
  assert table_errors(too_wide) == ["line 3: row has 3 cells, header 2"]


def test_above_or_below_pointing_the_wrong_way_is_caught():
  good = ("# Page\n\n## Results\n\nThe table below is the main one.\n\n| a |\n|---|\n| 1 |\n\n"
          "Read from the final table above; see \"Notes\" below and [the notes](#notes-on-it) below.\n\n"
          "## Notes on it\n\nAs \"Results\" above says, see [above](#results).\n\n![p](figures/x.png)\n\n"
          "The plot above.\n")
  assert direction_errors(good) == []
  bad = ("# Page\n\n## Results\n\nThe table above is the main one.\n\n| a |\n|---|\n| 1 |\n\n"
         "## Notes\n\nRead from the table above. As \"Results\" below says, see [below](#results), "
         "[missing](#no-such-heading). The plot below.\n\n## Plot\n\n![p](figures/x.png)\n")
  assert direction_errors(bad) == [
      'line 5: "The table above" but no table above it in its section',
      'line 13: "the table above" but no table above it in its section',
      'line 13: "The plot below" but no plot below it in its section',
      "line 13: #results is not below",
      "line 13: link to #no-such-heading, which no heading of the page has",
      'line 13: section "Results" is not below']


def test_a_planted_machine_path_is_caught():
  assert machine_path_errors("run `train.py --workdir=runs/x`, `/usr/bin/time -v`, `$HOME/x`, ./tmp/y") == []
  text = "see /work/venv-torch/bin/python\nand --out=/tmp/x, ~/a or /home/me/b"
  assert machine_path_errors(text) == ["line 1: absolute machine path /work/venv-torch/bin/python",
                                       "line 2: absolute machine path /tmp/x,", "line 2: absolute machine path /home/me/b"]


def test_planted_history_is_caught_and_an_upstream_tracker_is_allowed():
  assert history_errors("As RouteLLM #36 and lm-sys/RouteLLM#36 report; see [x](#results); 12:30 ms") == []
  text = ("The recipe before this session.\nIssue 21's goals; fixed in #21.\nAt this stop, 12:44-13:35 UTC, "
          "jobs paused with SIGSTOP.")
  assert [e.split(": ", 1)[1] for e in history_errors(text)] == [
      'history in a manual: "session"', 'history in a manual: "Issue 21"', 'history in a manual: "#21"',
      'history in a manual: "this stop"', 'history in a manual: "12:44-13:35 UTC"',
      'history in a manual: "SIGSTOP"']


def test_docstrings_of_code_are_read_for_the_checks(tmp_path):
  path = tmp_path / "m.py"
  path.write_text('"""Module (issue 21).\n\n  python x.py --out=/tmp/x\n"""\n# issue 3 in a comment\n'
                  'def f():\n  """Made this session."""\n')
  text = docstrings(str(path))
  assert [e.split(": ", 1)[1] for e in history_errors(text)] == [
      'history in a manual: "issue 21"', 'history in a manual: "session"']
  assert machine_path_errors(text) == ["line 3: absolute machine path /tmp/x"]


def test_a_link_to_a_renamed_heading_of_another_page_is_caught():
  anchors = {"docs/performance.md": {"figures-cpu", "the-querys-own-path-and-training-at-the-papers-scale"}}.get
  good = "[x](performance.md#figures-cpu), [y](../README.md), [z](performance.md)"
  assert cross_page_anchor_errors("docs/serving.md", good, anchors_of=anchors) == []
  bad = ("[x](performance.md#the-querys-own-path-and-training-at-the-papers-scale-issue-23), "
         "[y](no_such_page.md#a)")
  assert cross_page_anchor_errors("docs/serving.md", bad, anchors_of=anchors) == [
      "link to performance.md#the-querys-own-path-and-training-at-the-papers-scale-issue-23, which no heading of "
      "docs/performance.md has", "link to no_such_page.md, which does not exist"]
  assert "the-querys-own-path-and-training-at-the-papers-scale" in page_anchors("docs/performance.md")
