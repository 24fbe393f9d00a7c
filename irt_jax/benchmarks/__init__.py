"""Benchmark-score prediction: an LLM's score on a benchmark the model never saw.

Modules, lowest first:
* scores: the offset estimators (zero-shot and from k labels per LLM), adaptive
  query order, and the metrics of predicted against true scores;
* query_choice: which k queries to label (random, stratified, anchors);
* grid_estimators: the design-based estimators' algebra (blend, kernel, diff);
* held_out: one held-out benchmark (Bench) and every estimator on one design;
* grid: every label protocol x query choice x estimator x k, over draws;
* grid_tables, tables, figures: the grid's and the result's tables and PNGs;
* evaluator: the eval report's benchmark-prediction section;
* leave_benchmark_out: the protocol (one training per held-out benchmark);
* predict: a new benchmark's scores for a trained run's LLMs, and which queries
  to label.
"""
