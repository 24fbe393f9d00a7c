"""Readers of evaluation logs: each turns one source into rows (model, prompt, score, benchmark).

`read_inputs(paths, options)` finds and reads every source under the given paths
(files or folders), telling formats apart by their content:

  * tables (`table`): CSV, JSON lines, a JSON array of records, or Parquet; long
    (a model column) or wide (one score column per model);
  * lm-evaluation-harness output (`lm_eval`): `results_*.json` + `samples_*.jsonl`
    (v0.4) or the older one-file-per-task `<model_args>_<task>.jsonl`;
  * inspect_ai logs (`inspect_logs`): `.eval` (a zip) or `.json`;
  * HELM run folders (`helm`): `run_spec.json`, `scenario_state.json`,
    `per_instance_stats.json`.

Every reader returns a `rows.Rows` frame; `irt_jax.data.assemble` joins them.
"""
