r"""`irt-jax build-data`: evaluation logs in, a run-ready data folder out (the work is
irt_jax.data.build).

  irt-jax build-data --out=data/mine [--threshold=0.5] [--metric=NAME] \
      [--encoder_dir=.models/all-mpnet-base-v2 | --encoder_dir=] PATH [PATH ...]

Each PATH is a file or folder of score tables, lm-evaluation-harness output, inspect_ai
logs or HELM run folders (docs/data.md, "Building a folder from evaluation logs").
"""

from absl import flags

from irt_jax.cli import flags as cli_flags
from irt_jax.data import build as build_lib
from irt_jax.data.sources.rows import Options

FLAGS = flags.FLAGS


def define_flags() -> None:
  flags.DEFINE_string("out", None, "Data folder to create.")
  flags.DEFINE_float("threshold", None, "Scores >= this count as correct; required when "
                     "scores are not 0/1.")
  flags.DEFINE_string("metric", None, "lm-eval metric, inspect scorer or HELM stat to read "
                      "(default: the task's primary metric, the log's first scorer, exact_match).")
  flags.DEFINE_string("lm_eval_filter", None, "lm-eval filter whose rows to read (default "
                      "'none', else the first in the file).")
  flags.DEFINE_string("model", None, "Model name for every input (when the logs name none).")
  flags.DEFINE_string("benchmark", None, "Benchmark of inputs that name none (default 'unknown').")
  flags.DEFINE_string("model_column", None, "Tables: the model column.")
  flags.DEFINE_string("prompt_column", None, "Tables: the prompt text column.")
  flags.DEFINE_string("score_column", None, "Tables: the label or score column.")
  flags.DEFINE_string("benchmark_column", None, "Tables: the benchmark column.")
  flags.DEFINE_string("encoder_dir", build_lib.DEFAULT_ENCODER, "Encoder folder for the "
                      "embeddings (MPNet, MiniLM or a static encoder); empty: write none.")
  flags.DEFINE_integer("batch_size", 64, "Encoder batch size.")
  flags.DEFINE_string("split_name", None, "Seeds the query split (default: the --out folder "
                      "name).")
  flags.DEFINE_bool("overwrite", False, "Replace an existing --out folder.")


def main(argv):
  cli_flags.require("out")
  options = Options(metric=FLAGS.metric, lm_eval_filter=FLAGS.lm_eval_filter, model=FLAGS.model,
                    benchmark=FLAGS.benchmark, model_column=FLAGS.model_column,
                    prompt_column=FLAGS.prompt_column, score_column=FLAGS.score_column,
                    benchmark_column=FLAGS.benchmark_column)
  with cli_flags.user_errors("build-data", also=(OSError,)):
    text = build_lib.build(argv[1:], FLAGS.out, options, threshold=FLAGS.threshold,
                           encoder_dir=FLAGS.encoder_dir or None, split_name=FLAGS.split_name,
                           overwrite=FLAGS.overwrite, batch_size=FLAGS.batch_size)
  print(text)
  if not FLAGS.encoder_dir:
    print(f"no embeddings written: irt-jax encode --data_dir={FLAGS.out} --model_dir=... adds them")
