"""Interpretability and calibration evaluators: hand cases for every statistic, the
evaluators on a real predictor (IrtNet and a kind without an IRT view), report.md."""

import dataclasses
import os

import jax
import numpy as np
import pytest

from configs import test as test_config
from irt_jax.data import io as data_lib
from irt_jax import models
from irt_jax import predictors
from irt_jax.evaluation import calibration
from irt_jax.evaluation import evaluators
from irt_jax.evaluation import interpretability as interp
from irt_jax.evaluation import plots
from irt_jax.evaluation import report as report_lib
from irt_jax.models import base
from tests.conftest import synthetic_spec


def test_per_query_and_benchmark_accuracy_skip_unknown_answers():
  labels = np.array([[1, 0, -1], [-1, -1, -1], [1, 1, 1], [0, -1, 1]], np.int8)
  q = interp.per_query_accuracy(labels)
  assert q[0] == 0.5 and np.isnan(q[1]) and q[2] == 1.0 and q[3] == 0.5
  bench = np.array([0, 0, 1, 1])
  # benchmark 1: LLM accuracies 1/2, 1 (one known answer), 1 -> mean 5/6
  assert interp.benchmark_accuracy(labels, bench, 1) == pytest.approx(5 / 6)
  # benchmark 0: LLM 0: 1, LLM 1: 0, LLM 2 has no answer -> mean 1/2
  assert interp.benchmark_accuracy(labels, bench, 0) == pytest.approx(0.5)


def test_correlations_ignore_missing_values():
  c = interp.correlations([1, 2, 3, 4, np.nan], [2, 4, 6, 7, 1])
  assert c["n"] == 4 and c["spearman"] == pytest.approx(1.0)
  assert c["pearson"] == pytest.approx(np.corrcoef([1, 2, 3, 4], [2, 4, 6, 7])[0, 1])


def test_nearest_neighbours_by_cosine_of_centred_abilities():
  theta = np.array([[1, 0], [1, 0.2], [-1, 0], [-1, -0.2]]) + 5.0  # a shift changes nothing
  nn = interp.nearest_neighbours(theta, ["a", "b", "c", "d"], k=3)
  assert [n["model"] for n in nn["a"]] == ["b", "d", "c"]
  assert nn["a"][0]["cosine"] == pytest.approx(1 / np.sqrt(1.04))
  assert nn["a"][2]["cosine"] == pytest.approx(-1.0)


def test_gate_usage_mean_weights_and_entropies():
  w = np.array([[1, 0], [0.5, 0.5], [0, 1], [0, 1]])
  g = interp.gate_usage(w, np.array([0, 0, 1, 1]), ("x", "y"))
  assert g["per_benchmark"]["x"]["mean_weight"] == pytest.approx([0.75, 0.25])
  assert g["per_benchmark"]["x"]["mean_entropy"] == pytest.approx(np.log(2) / 2)
  assert g["per_benchmark"]["y"]["mean_entropy"] == pytest.approx(0.0)
  assert g["mean_weight"] == pytest.approx([0.375, 0.625])
  assert g["mean_entropy"] == pytest.approx(np.log(2) / 4)
  assert g["max_entropy"] == pytest.approx(np.log(2))
  # expert 0 is used by x only (a specialist); expert 1 splits 0.25 : 1 over x : y
  assert g["expert_benchmark_entropy"] == pytest.approx([0.0, -(0.2 * np.log(0.2) +
                                                               0.8 * np.log(0.8))])


@pytest.fixture(scope="module")
def context(tmp_path_factory):
  """A context over synthetic data with an untrained IrtNet (statistics, not quality)."""
  from irt_jax.data import synthetic
  folder = synthetic.write(str(tmp_path_factory.mktemp("interp")), synthetic_spec(
      n_models=6, n_queries=150, embed_dim=16, n_benchmarks=3, true_dim=2, missing_frac=0.1,
      seed=2))
  data = data_lib.load_dataset(folder)
  config = test_config.get_config()
  kind = models.for_config(config)
  spec = kind.spec(config.model, data.n_models, data.embed_dim)
  params = jax.device_get(kind.init(jax.random.PRNGKey(0), spec))
  predictor = predictors.Predictor(kind, spec, params, data.model_names)
  run = predictors.Run(workdir=folder, step=0, config=config, index=data.index_maps(),
                       predictor=predictor)

  def make(split="test", options=None, predictor=predictor):
    r = dataclasses.replace(run, predictor=predictor)
    return evaluators.Context(run=r, data=data, split=split,
                              predictions=evaluators.predictions_for(predictor, data, split),
                              options=options or {})
  return make


def test_interpretability_evaluator_matches_a_direct_computation(context):
  ctx = context()
  out = interp.InterpretabilityEvaluator().run(ctx)
  p = ctx.run.predictor
  queries = ctx.data.split("test").queries
  _, diff = base.identified_items(p.kind, p.params, ctx.data.embeddings[queries], p.spec)
  diff = np.asarray(diff)
  frac = interp.per_query_accuracy(ctx.predictions.labels)
  ok = np.isfinite(frac)
  d = out["difficulty"]["identified_query_vs_fraction_correct"]
  assert d["n"] == ok.sum()
  assert d["pearson"] == pytest.approx(np.corrcoef(diff[ok], frac[ok])[0, 1], abs=1e-5)
  bench = ctx.predictions.benchmark
  per = out["difficulty"]["per_benchmark"]
  for b, name in enumerate(ctx.data.benchmark_names):
    assert per[name]["mean_identified"] == pytest.approx(diff[bench == b].mean(), abs=1e-5)
  assert len(out["abilities"]["pca"]) == ctx.data.n_models
  assert set(out["abilities"]["nearest_neighbours"]) == set(ctx.data.model_names)
  gate = out["gate"]
  assert gate["n_experts"] == ctx.run.config.model.n_experts
  assert sum(gate["mean_weight"]) == pytest.approx(1.0, abs=1e-5)


def test_a_kind_without_an_irt_view_is_skipped_with_a_reason(context):
  p = context().run.predictor
  plain = dataclasses.replace(p, kind=dataclasses.replace(p.kind, irt=None))
  out = interp.InterpretabilityEvaluator().run(context(predictor=plain))
  assert "skipped" in out and "item-response" in out["skipped"]


def test_calibration_evaluator_before_and_after_temperature(context):
  ctx = context(options={"temperature": True})
  out = calibration.CalibrationEvaluator().run(ctx)
  pred = ctx.predictions
  assert out["ece"] == pytest.approx(calibration.ece(pred.proba[pred.known],
                                                     pred.labels[pred.known]))
  val = ctx.data.split("val")
  val_logits = ctx.run.predictor.logits(ctx.data.embeddings[val.queries])[val.mask]
  t = calibration.fit_temperature(val_logits, val.labels[val.mask])
  assert out["temperature"]["value"] == pytest.approx(t, rel=1e-6)
  logits = pred.logits[pred.known]
  assert out["temperature"]["ece_after"] == pytest.approx(
      calibration.ece(1 / (1 + np.exp(-logits / t)), pred.labels[pred.known]))
  assert "skipped" in calibration.CalibrationEvaluator().run(context())["temperature"]


def test_report_markdown_and_plots_from_the_default_evaluators(context, tmp_path):
  from irt_jax import evaluation
  assert {"interpretability", "calibration"} <= set(evaluators.DEFAULT)
  ctx = context()
  report = evaluation.evaluate(ctx.run, ctx.data, "test", evaluators.DEFAULT,
                               {"temperature": True})
  assert {"correctness", "routing", "interpretability", "calibration"} <= set(report)
  files = report_lib.report_plots(report, str(tmp_path / "plots"))
  assert set(files) == {"ability map", "difficulty vs accuracy", "reliability diagram",
                        "routing accuracy per benchmark"}
  for path in files.values():
    assert os.path.getsize(path) > 5000
  md_path = report_lib.write_markdown(report, str(tmp_path), files)
  md = open(md_path).read()
  assert "## Interpretability" in md and "## Calibration" in md and "plots/abilities.png" in md
  assert "Temperature fitted on val" in md
  for name in ctx.data.model_names:
    assert name in md  # nearest neighbours listed per model
  text = report_lib.format_report(report)
  assert "calibration: ECE (15 bins)" in text and "after temperature" in text
  assert "interpretability: Pearson" in text


def test_write_compare_adds_markdown_and_a_routing_plot(tmp_path):
  from irt_jax import evaluation
  runs = {name: {"kind": kind, "correctness": {"accuracy": acc, "auc": 0.7, "log_loss": 0.5,
                                               "brier": 0.2},
                 "routing": {"micro": acc, "macro": acc, "per_benchmark": {"x": acc, "y": 0.5},
                             "baselines": {"oracle": {"micro": 0.9, "macro": 0.9}}}}
          for name, kind, acc in (("a", "irtnet", 0.6), ("b", "knn", 0.55))}
  result = {"dataset": "toy", "split": "test", "runs": runs,
            "table": report_lib.compare_rows(runs)}
  md = open(evaluation.write_compare(result, str(tmp_path))).read()
  assert "| a | irtnet | 0.6000 |" in md and "| oracle | - |" in md
  assert os.path.getsize(tmp_path / "plots" / "compare_routing_per_benchmark.png") > 5000
  assert os.path.exists(tmp_path / "compare.json")
