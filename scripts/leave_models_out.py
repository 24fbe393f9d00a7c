r"""Leave-models-out evaluation of cold start (adding an LLM from k answers).

  python scripts/leave_models_out.py --data_dir=../shared/data/zeroeval --workdir=runs/lmo_zeroeval

Holds out a third of the LLMs (seeded), trains on the rest, then adds each
held-out LLM from k of its train-split answers (k in --ks), chosen at random or
adaptively (8 proposals per round: D-optimal, trace, or D-optimal taking
each benchmark in turn by its share of the pool), and compares on the test split
with a model trained with every LLM (same config):
  * MAE (points) of each held-out LLM's predicted per-benchmark accuracy
    (mean predicted P(correct) over its known test cells of the benchmark vs
    its actual accuracy there), averaged over benchmarks and held-out LLMs;
  * routing accuracy among all LLMs once every held-out LLM is added, and its
    gap to the model trained with them.
The config is configs/synthetic.py's (small: 16 ability dimensions, 2 CPU
cores) with data.dir set; --config overrides it. Writes results.json,
table.md and error_vs_k.png into --workdir.
"""

from __future__ import annotations

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from irt_jax import logs  # noqa: E402
from irt_jax.coldstart import ability as coldstart  # noqa: E402
from irt_jax.data import io as data_lib  # noqa: E402
from irt_jax import predictors  # noqa: E402
from irt_jax.routing import rules  # noqa: E402
from irt_jax.training import loop as training  # noqa: E402
from irt_jax import utils  # noqa: E402
from irt_jax.evaluation import evaluators  # noqa: E402

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", "configs/synthetic.py", "Training config (model sizes).")
flags.DEFINE_string("data_dir", None, "Dataset folder (EmbedLLM layout).")
flags.DEFINE_string("workdir", None, "Where runs and results go.")
flags.DEFINE_float("fraction", 1 / 3, "Share of LLMs held out.")
flags.DEFINE_integer("seed", 0, "Seed of the held-out draw and the random answers.")
flags.DEFINE_list("ks", ["8", "16", "32", "64", "128", "256"], "Answers per new LLM.")
flags.DEFINE_integer("batch", 8, "Queries proposed per adaptive round.")

# Adaptive strategies: name -> (coldstart.propose criterion, stratify by benchmark).
STRATEGIES = {"adaptive_d": ("d", False), "adaptive_trace": ("trace", False),
              "adaptive_d_bench": ("d", True)}
LABELS = {"random": "random", "adaptive_d": "D-opt", "adaptive_trace": "trace",
          "adaptive_d_bench": "D-opt by benchmark"}


def write_without_models(data_dir: str, out: str, drop: list[str]) -> str:
  """A copy of a dataset folder without some models' columns (split rows and
  model_order rows removed; queries and embeddings linked, not copied)."""
  os.makedirs(out, exist_ok=True)
  ids, names = data_lib.read_model_order(os.path.join(data_dir, "model_order.csv"))
  keep_ids = {i for i, n in zip(ids, names) if n not in drop}
  order = pd.read_csv(os.path.join(data_dir, "model_order.csv"), dtype=str,
                      keep_default_na=False)
  order[order["model_id"].isin(keep_ids)].to_csv(os.path.join(out, "model_order.csv"),
                                                 index=False)
  for split in data_lib.SPLITS:
    frame = pd.read_csv(os.path.join(data_dir, f"{split}.csv"), dtype=str, keep_default_na=False)
    frame[frame["model_id"].isin(keep_ids)].to_csv(os.path.join(out, f"{split}.csv"), index=False)
  for name in ("question_order.csv", "question_embeddings.npy"):
    link = os.path.join(out, name)
    if not os.path.exists(link):
      os.symlink(os.path.abspath(os.path.join(data_dir, name)), link)
  return out


def train_run(config, data_dir: str, workdir: str) -> predictors.Run:
  config = config.copy_and_resolve_references()
  config.data.dir = data_dir
  training.train_and_evaluate(config, workdir)  # resumes / returns at once when done
  return predictors.load(workdir)


def columns(predictor, names) -> np.ndarray:
  index = {n: i for i, n in enumerate(predictor.model_names)}
  return np.array([index[n] for n in names])


def benchmark_mae(proba: np.ndarray, labels: np.ndarray, benchmark: np.ndarray) -> float:
  """Mean over benchmarks of |predicted - actual accuracy| for one model's column."""
  errs = []
  for b in np.unique(benchmark):
    rows = (benchmark == b) & (labels >= 0)
    if rows.any():
      errs.append(abs(proba[rows].mean() - (labels[rows] == 1).mean()))
  return float(np.mean(errs))


def score(predictor, data, held: list[str], order_train: np.ndarray) -> dict:
  """Held-out MAE (points) and routing accuracy among all LLMs on test."""
  test = data.split("test")
  emb = data.embeddings[test.queries]
  logits = predictor.logits(emb)[:, columns(predictor, data.model_names)]
  proba = 1 / (1 + np.exp(-logits.astype(np.float64)))
  bench = data.benchmark[test.queries]
  held_idx = [data.model_names.index(h) for h in held]
  maes = [benchmark_mae(proba[:, j], test.labels[:, j], bench) for j in held_idx]
  route = evaluators.routing_summary(logits, test.labels, bench, data.benchmark_names,
                                     order_train)
  # Routing among the held-out LLMs only: does each new LLM's column rank the
  # queries it is good at (all-LLM routing is dominated by the trained ones).
  held_route = evaluators.routing_summary(
      logits[:, held_idx], test.labels[:, held_idx], bench, data.benchmark_names,
      np.array([held_idx.index(m) for m in order_train if m in held_idx]))
  return {"mae": 100 * float(np.mean(maes)), "routing_micro": 100 * route["micro"],
          "routing_held_micro": 100 * held_route["micro"],
          "held_oracle": 100 * held_route["baselines"]["oracle"]["micro"],
          "held_best_single": 100 * held_route["baselines"]["best_single"]["micro"],
          "held_random": 100 * held_route["baselines"]["random"]["micro"],
          "routing_macro": 100 * route["macro"],
          "oracle": 100 * route["baselines"]["oracle"]["micro"],
          "best_single": 100 * route["baselines"]["best_single"]["micro"]}


def main(argv):
  del argv
  logs.quiet_startup()
  config = utils.config_from_flag(FLAGS, "leave_models_out.py")
  ks = sorted(int(k) for k in FLAGS.ks)
  os.makedirs(FLAGS.workdir, exist_ok=True)
  data = data_lib.load_dataset(FLAGS.data_dir, benchmarks=config.data.benchmarks)
  rng = np.random.default_rng(FLAGS.seed)
  n_held = max(1, int(round(FLAGS.fraction * data.n_models)))
  held = sorted(rng.choice(data.model_names, n_held, replace=False).tolist(),
                key=data.model_names.index)
  logging.info("holding out %d of %d LLMs: %s", n_held, data.n_models, held)

  subset = write_without_models(FLAGS.data_dir, os.path.join(FLAGS.workdir, "data_subset"), held)
  base = train_run(config, subset, os.path.join(FLAGS.workdir, "base"))
  full = train_run(config, FLAGS.data_dir, os.path.join(FLAGS.workdir, "full"))
  order_train = rules.best_single_order(data.split("train"))

  # Items of every query under the base run, and the prior from its abilities.
  a_all, b_all = coldstart.item_parameters(base.predictor, data.embeddings)
  prior = coldstart.prior_from_abilities(coldstart.abilities(base.predictor))
  train = data.split("train")
  thetas = {(s, k): [] for s in ("random", *STRATEGIES) for k in ks}
  pool_sizes = {}
  for h in held:
    j = data.model_names.index(h)
    rows = np.flatnonzero(train.labels[:, j] >= 0)
    pool_q, pool_y = train.queries[rows], train.labels[rows, j].astype(int)
    pool_sizes[h] = len(rows)
    a, b = a_all[pool_q], b_all[pool_q]
    perm = np.random.default_rng([FLAGS.seed, j]).permutation(len(rows))
    for k in ks:
      pick = perm[:k]
      thetas[("random", k)].append(coldstart.fit_ability(a[pick], b[pick], pool_y[pick], prior)[0])
    for strategy, (criterion, stratify) in STRATEGIES.items():
      got = {}
      for r in coldstart.adaptive_rounds(a, b, lambda idx: pool_y[idx], prior, batch=FLAGS.batch,
                                         rounds=-(-min(max(ks), len(rows)) // FLAGS.batch),
                                         criterion=criterion,
                                         strata=data.benchmark[pool_q] if stratify else None):
        n = len(r["asked"])
        for k in ks:
          if k not in got and n >= min(k, len(rows)):
            got[k] = coldstart.fit_ability(a[r["asked"][:k]], b[r["asked"][:k]],
                                           r["labels"][:k], prior)[0]
      for k in ks:
        thetas[(strategy, k)].append(got[k])
    logging.info("%s: %d train answers in the pool", h, len(rows))

  rows = []
  full_score = score(full.predictor, data, held, order_train)
  prior_only = score(coldstart.with_new_models(base.predictor, held,
                                               np.tile(prior.mean, (len(held), 1))),
                     data, held, order_train)
  for (strategy, k), ths in sorted(thetas.items(), key=lambda x: (x[0][0], x[0][1])):
    s = score(coldstart.with_new_models(base.predictor, held, np.stack(ths)), data, held,
              order_train)
    rows.append({"strategy": strategy, "k": k, **s,
                 "mae_gap": s["mae"] - full_score["mae"],
                 "routing_gap": full_score["routing_micro"] - s["routing_micro"]})
  result = {"dataset": data.name, "n_models": data.n_models, "held_out": held,
            "pool_sizes": pool_sizes, "trained_with_all": full_score, "prior_mean_only": prior_only,
            "rows": rows, "config": "configs/synthetic.py model sizes, data.dir set"}
  with open(os.path.join(FLAGS.workdir, "results.json"), "w") as f:
    json.dump(result, f, indent=2)
  table = markdown(result)
  with open(os.path.join(FLAGS.workdir, "table.md"), "w") as f:
    f.write(table + "\n")
  print(table)
  plot(result, os.path.join(FLAGS.workdir, "error_vs_k.png"))


def markdown(result: dict) -> str:
  full, prior = result["trained_with_all"], result["prior_mean_only"]
  names = ["random", *STRATEGIES]
  lines = [f"{result['dataset']}: {len(result['held_out'])} of {result['n_models']} LLMs held out; "
           f"MAE of per-benchmark accuracy (points), routing accuracy among all LLMs (micro, %)",
           "", "| k | " + " | ".join(f"MAE {LABELS[n]}" for n in names) + " | "
           + " | ".join(f"routing {LABELS[n]}" for n in names) + " |",
           "|---" * (1 + 2 * len(names)) + "|"]
  by = {(r["strategy"], r["k"]): r for r in result["rows"]}
  for k in sorted({r["k"] for r in result["rows"]}):
    lines.append(f"| {k} | " + " | ".join(f"{by[(n, k)]['mae']:.2f}" for n in names) + " | "
                 + " | ".join(f"{by[(n, k)]['routing_micro']:.2f}" for n in names) + " |")
  blank = " |" * (len(names) - 1)
  for label, r in (("0 (prior mean)", prior), ("trained with all", full)):
    lines.append(f"| {label} | {r['mae']:.2f} |{blank} {r['routing_micro']:.2f} |{blank}")
  lines += ["", f"Routing among the {len(result['held_out'])} held-out LLMs only (micro, %): "
            f"oracle {full['held_oracle']:.2f}, best single {full['held_best_single']:.2f}, "
            f"random {full['held_random']:.2f}", "",
            "| k | " + " | ".join(LABELS[n] for n in names) + " |", "|---" * (1 + len(names)) + "|"]
  for k in sorted({r["k"] for r in result["rows"]}):
    lines.append(f"| {k} | " + " | ".join(f"{by[(n, k)]['routing_held_micro']:.2f}"
                                          for n in names) + " |")
  for label, r in (("0 (prior mean)", prior), ("trained with all", full)):
    lines.append(f"| {label} | {r['routing_held_micro']:.2f} |" + " |" * (len(names) - 1))
  return "\n".join(lines)


def plot(result: dict, path: str) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
  for strategy, color in zip(["random", *STRATEGIES],
                             ("tab:orange", "tab:blue", "tab:green", "tab:purple")):
    rows = sorted((r for r in result["rows"] if r["strategy"] == strategy), key=lambda r: r["k"])
    ks = [r["k"] for r in rows]
    axes[0].plot(ks, [r["mae"] for r in rows], "o-", color=color, label=LABELS[strategy])
    axes[1].plot(ks, [r["routing_micro"] for r in rows], "o-", color=color,
                 label=LABELS[strategy])
  full = result["trained_with_all"]
  axes[0].axhline(full["mae"], color="k", ls="--", label="trained with it")
  axes[1].axhline(full["routing_micro"], color="k", ls="--", label="trained with it")
  axes[0].axhline(result["prior_mean_only"]["mae"], color="grey", ls=":", label="prior mean")
  for ax, ylabel in zip(axes, ("MAE per-benchmark accuracy (points)",
                               "routing accuracy, all LLMs (%)")):
    ax.set_xscale("log", base=2)
    ax.set_xlabel("answers k of each new LLM")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
  axes[0].legend(fontsize=8)
  fig.suptitle(f"{result['dataset']}: {len(result['held_out'])} of {result['n_models']} LLMs "
               f"added from k answers")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


if __name__ == "__main__":
  flags.mark_flags_as_required(["data_dir", "workdir"])
  app.run(main)
