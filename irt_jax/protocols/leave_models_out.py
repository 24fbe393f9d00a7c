"""Leave-models-out: how well cold start adds an LLM from k of its answers.

A seeded share of the LLMs is held out; one model is trained on the rest (the
subset in memory, `data.splits.without_models`: no copy of the data is written)
and one with every LLM (same config). Each held-out LLM is then added to the
first from k of its train-split answers, chosen at random or adaptively (rounds
of `batch` proposals: D-optimal, trace, or D-optimal taking each benchmark in
turn by its share of the pool), and both are compared on the test split:
  * MAE (points) of each held-out LLM's predicted per-benchmark accuracy (mean
    predicted P(correct) over its known test cells of the benchmark vs its
    actual accuracy there), averaged over benchmarks and held-out LLMs;
  * routing accuracy among all LLMs once every held-out LLM is added, its gap to
    the model trained with them, and routing among the held-out LLMs alone.

The two runs live in WORKDIR/base and WORKDIR/full (ordinary training workdirs:
an interrupted one resumes; the base run's checkpoint holds the subset's data
fingerprint). `run` writes results.json, table.md and error_vs_k.png.
"""

from __future__ import annotations

import os

import numpy as np
from absl import logging

from irt_jax import numerics
from irt_jax import predictors
from irt_jax import utils
from irt_jax.coldstart import ability as coldstart
from irt_jax.data import io as data_lib
from irt_jax.data import resolve
from irt_jax.data import splits as data_splits
from irt_jax.evaluation import evaluators
from irt_jax.routing import rules
from irt_jax import training

# Adaptive strategies: name -> (coldstart.propose criterion, stratify by benchmark).
STRATEGIES = {"adaptive_d": ("d", False), "adaptive_trace": ("trace", False),
              "adaptive_d_bench": ("d", True)}
LABELS = {"random": "random", "adaptive_d": "D-opt", "adaptive_trace": "trace",
          "adaptive_d_bench": "D-opt by benchmark"}


def held_out_models(model_names, fraction: float, seed: int) -> list[str]:
  """A seeded `fraction` of the LLMs (at least one), in the dataset's order."""
  n_held = max(1, int(round(fraction * len(model_names))))
  if n_held >= len(model_names):
    raise data_lib.DataError(f"holding out {n_held} of {len(model_names)} LLMs leaves none to "
                             f"train on; lower the fraction ({fraction})")
  rng = np.random.default_rng(seed)
  return sorted(rng.choice(list(model_names), n_held, replace=False).tolist(),
                key=list(model_names).index)


def train_run(config, data: data_lib.ResponseData, workdir: str) -> predictors.Run:
  """Trains (or resumes, or finds done) a run on `data`."""
  training.run(config, workdir, data)
  return predictors.load(workdir)


def columns(predictor, names) -> np.ndarray:
  """The predictor's column of each model name."""
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


def score(predictor, data: data_lib.ResponseData, held: list[str],
          order_train: np.ndarray) -> dict:
  """Held-out MAE (points) and routing accuracy among all LLMs on test."""
  test = data.split("test")
  emb = data.embeddings[test.queries]
  logits = predictor.logits(emb)[:, columns(predictor, data.model_names)]
  proba = numerics.sigmoid(logits)
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


def _adaptive_thetas(a, b, answers, prior, ks, batch: int, criterion: str, strata) -> dict:
  """{k: ability fitted from the first k adaptively asked answers}."""
  n_pool, got = len(answers), {}
  for r in coldstart.adaptive_rounds(a, b, lambda idx: answers[idx], prior, batch=batch,
                                     rounds=-(-min(max(ks), n_pool) // batch),
                                     criterion=criterion, strata=strata):
    asked = len(r["asked"])
    for k in ks:
      if k not in got and asked >= min(k, n_pool):
        got[k] = coldstart.fit_ability(a[r["asked"][:k]], b[r["asked"][:k]],
                                       r["labels"][:k], prior)[0]
  return got


def model_thetas(items, prior, data: data_lib.ResponseData, model: str, ks, seed: int,
                 batch: int) -> tuple[dict, int]:
  """{(strategy, k): ability} of one held-out LLM from k of its train answers,
  and the size of its pool (its known train cells). `items`: (a, b) of every query."""
  train, j = data.split("train"), data.model_names.index(model)
  rows = np.flatnonzero(train.labels[:, j] >= 0)
  pool_q, answers = train.queries[rows], train.labels[rows, j].astype(int)
  a, b = items[0][pool_q], items[1][pool_q]
  pick = np.random.default_rng([seed, j]).permutation(len(rows))
  out = {("random", k): coldstart.fit_ability(a[pick[:k]], b[pick[:k]], answers[pick[:k]],
                                              prior)[0] for k in ks}
  for strategy, (criterion, stratify) in STRATEGIES.items():
    got = _adaptive_thetas(a, b, answers, prior, ks, batch, criterion,
                           data.benchmark[pool_q] if stratify else None)
    out.update({(strategy, k): got[k] for k in ks})
  return out, len(rows)


def compare(base, full, data: data_lib.ResponseData, held: list[str], ks, seed: int,
            batch: int) -> dict:
  """Scores of the base run with the held-out LLMs added by every strategy and k,
  of the prior mean alone, and of the run trained with every LLM."""
  order_train = rules.best_single_order(data.split("train"))
  items = coldstart.item_parameters(base.predictor, data.embeddings)
  prior = coldstart.prior_from_abilities(coldstart.abilities(base.predictor))
  thetas, pool_sizes = {}, {}
  for h in held:
    per_model, pool_sizes[h] = model_thetas(items, prior, data, h, ks, seed, batch)
    for key, theta in per_model.items():
      thetas.setdefault(key, []).append(theta)
    logging.info("%s: %d train answers in the pool", h, pool_sizes[h])
  added = lambda ths: score(coldstart.with_new_models(base.predictor, held, np.stack(ths)),
                            data, held, order_train)
  full_score = score(full.predictor, data, held, order_train)
  rows = []
  for (strategy, k), ths in sorted(thetas.items()):
    s = added(ths)
    rows.append({"strategy": strategy, "k": k, **s, "mae_gap": s["mae"] - full_score["mae"],
                 "routing_gap": full_score["routing_micro"] - s["routing_micro"]})
  return {"dataset": data.name, "n_models": data.n_models, "held_out": held,
          "pool_sizes": pool_sizes, "trained_with_all": full_score,
          "prior_mean_only": added([prior.mean] * len(held)), "rows": rows}


def run(config, data_dir: str, workdir: str, *, fraction: float = 1 / 3, seed: int = 0,
        ks=(8, 16, 32, 64, 128, 256), batch: int = 8) -> dict:
  """The protocol on the dataset in `data_dir`; writes results.json, table.md and
  error_vs_k.png into `workdir` and returns the results."""
  ks = sorted(int(k) for k in ks)
  os.makedirs(workdir, exist_ok=True)
  config = config.copy_and_resolve_references()
  config.data.dir = data_dir
  data = resolve.prepare_and_load(config, workdir, require=("train", "val", "test"))
  held = held_out_models(data.model_names, fraction, seed)
  logging.info("holding out %d of %d LLMs: %s", len(held), data.n_models, held)
  base = train_run(config, data_splits.without_models(data, held), os.path.join(workdir, "base"))
  full = train_run(config, data, os.path.join(workdir, "full"))
  result = {**compare(base, full, data, held, ks, seed, batch),
            "config": "configs/synthetic.py model sizes, data.dir set"}
  utils.write_json(os.path.join(workdir, "results.json"), result)
  with open(os.path.join(workdir, "table.md"), "w") as f:
    f.write(markdown(result) + "\n")
  plot(result, os.path.join(workdir, "error_vs_k.png"))
  return result


def markdown(result: dict) -> str:
  """The MAE / routing table over k, then routing among the held-out LLMs alone."""
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
  """error_vs_k.png: MAE and all-LLM routing accuracy against k, per strategy."""
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
