"""What every figure of the project shares: matplotlib on the Agg backend (no
display needed), one resolution, PNG files written where asked, short labels,
and the markdown lines that link the files from a report."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

DPI = 110


def save(fig, path: str) -> str:
  """Writes `fig` as a PNG at `path` (folders made), closes it, returns the path."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.tight_layout()
  fig.savefig(path, dpi=DPI)
  plt.close(fig)
  return path


def short(name: str, width: int = 28) -> str:
  """The last part of a model or benchmark name, cut to `width` characters."""
  name = str(name).split("/")[-1]
  return name if len(name) <= width else name[:width - 1] + "…"


def markdown_links(plot_files: dict | None, relative_to: str | None) -> list[str]:
  """Markdown image lines, title -> path, the paths relative to `relative_to`."""
  if not plot_files:
    return []
  lines = [""]
  for title, path in plot_files.items():
    rel = os.path.relpath(path, relative_to) if relative_to else path
    lines.append(f"![{title}]({rel})")
  return lines
