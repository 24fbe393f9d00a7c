"""Evaluators own their output: the report walks the registry, so a new evaluator's
text, markdown and figures appear without the report knowing its name, and each
class says when it applies (which sets the default evaluators and their order)."""

import json
import os
import types

import pytest

from configs import test as test_config
from irt_jax.data import synthetic
from irt_jax.evaluation import evaluators
from irt_jax.evaluation import report as report_lib

REPORT = {"dataset": "toy", "split": "test", "kind": "irtnet", "checkpoint_step": 7,
          "n_models": 2, "n_queries": 3,
          "correctness": {"accuracy": 0.5, "auc": 0.75, "log_loss": 0.6, "brier": 0.25}}


class _Planted:
  """An evaluator the report has never heard of."""
  name = "planted"
  figure_rank = -1

  def applies(self, run, options):
    return options.get("planted", False)

  def run(self, ctx):
    return {"value": 3}

  def text(self, section):
    return [f"  planted: value {section['value']}"]

  def markdown(self, section):
    return ["## Planted", "", f"value {section['value']}", ""]

  def figures(self, report, out_dir, tag):
    return {f"planted figure ({tag})": os.path.join(out_dir, "planted.png")}


@pytest.fixture
def planted(monkeypatch):
  registry = dict(evaluators.REGISTRY)
  registry["planted"] = _Planted
  monkeypatch.setattr(evaluators, "REGISTRY", registry)
  return {**REPORT, "planted": {"value": 3}}


def test_every_registered_evaluator_brings_its_whole_section():
  for name, cls in evaluators.REGISTRY.items():
    assert cls.name == name
    for method in ("applies", "run", "text", "markdown", "figures"):
      assert callable(getattr(cls, method, None)), f"{name} has no {method}"
    assert isinstance(cls.figure_rank, int)


def test_a_new_evaluator_shows_in_text_markdown_and_figures(planted, tmp_path):
  text = report_lib.format_report(planted).splitlines()
  assert text[0] == "toy / test: 2 models x 3 queries (irtnet, checkpoint step 7)"
  # registry order: correctness's line, then the planted one (appended last)
  assert text[1].startswith("  correctness  acc 0.5000  auc 0.7500")
  assert text[2] == "  planted: value 3" and len(text) == 3
  md = report_lib.markdown(planted, {"a": str(tmp_path / "plots" / "a.png")}, str(tmp_path))
  assert md.index("## Correctness") < md.index("## Planted") < md.index("![a](plots/a.png)")
  assert "value 3" in md
  files = report_lib.report_plots(planted, str(tmp_path))
  # correctness draws nothing; the planted figure is titled with the report's tag
  assert files == {"planted figure (toy / test (irtnet))": str(tmp_path / "planted.png")}


def test_without_the_section_the_evaluator_is_silent(planted):
  del planted["planted"]
  assert "planted" not in report_lib.format_report(planted)
  assert "Planted" not in report_lib.markdown(planted)


def test_figures_are_ordered_by_rank_not_by_registry():
  ranks = {name: cls.figure_rank for name, cls in evaluators.REGISTRY.items()}
  ordered = [c.name for c in sorted(evaluators.REGISTRY.values(), key=lambda c: c.figure_rank)]
  # the routing bars come after the interpretability and calibration maps
  assert ranks["routing"] > ranks["interpretability"] == ranks["calibration"]
  assert ordered.index("interpretability") < ordered.index("calibration") < ordered.index("routing")


def test_the_defaults_are_the_evaluators_that_apply(tmp_path, planted):
  folder, workdir = tmp_path / "data", tmp_path / "run"
  folder.mkdir()
  workdir.mkdir()
  config = test_config.get_config()
  config.data.dir = str(folder)
  run = types.SimpleNamespace(workdir=str(workdir), config=config)
  always = ("correctness", "routing", "interpretability", "calibration")
  assert evaluators.applying(run) == always == evaluators.DEFAULT
  (folder / synthetic.TRUTH_FILE).write_text("")
  assert evaluators.applying(run) == always + ("synthetic_truth",)
  (workdir / "benchmark_prediction.json").write_text(json.dumps({}))
  # registry order: benchmark prediction before synthetic truth, as report.json has them
  assert evaluators.applying(run) == always + ("benchmark_prediction", "synthetic_truth")
  (workdir / "benchmark_prediction.json").unlink()
  assert evaluators.applying(run, {"benchmark_prediction": "elsewhere.json"}) == (
      always + ("benchmark_prediction", "synthetic_truth"))
  assert evaluators.applying(run, {"planted": True})[-1] == "planted"
