"""Quality against cost: the frontier a cost-aware router traces, and the
summary figures published routers report.

Sweeping `cost_weight` w in argmax_m P(m correct) - w * cost_m gives one
(mean cost per query, accuracy) point per w on the test split. Summaries:

  * AIQ (RouterBench, Hu et al. 2024): the area under the router's
    non-decreasing convex hull of (cost, quality) points over the cost range,
    divided by the range's width (cost normalised to [0, 1] between the
    cheapest point and the dearest of the router's and single models' points),
    i.e. the hull's mean quality. The hull is the upper convex hull up to the
    highest-quality point and flat after it: any point on it is reachable by
    mixing the two neighbouring routings at random.
  * cost_to_match_best_single: the least mean cost at which that hull reaches
    the best single model's test accuracy (None if it never does).
  * peak_accuracy: the best accuracy among the swept points.
  * APGR and CPT(50%) (RouteLLM, Ong et al. 2024) for a strong/weak pair
    (strong: best single model by train accuracy; weak: the cheapest other
    model): route a query to the strong model when the router's score, here
    P(strong correct) - P(weak correct), clears a threshold. Moving the
    threshold routes a share c of queries to the strong model;
    PGR(c) = (acc(c) - acc(weak)) / (acc(strong) - acc(weak)). APGR is the
    area under PGR over c in [0, 1] (computed exactly over every threshold,
    where RouteLLM samples ten), CPT(50%) the least share c with PGR >= 0.5.

The same AIQ over the single models' points is RouterBench's "zero router"
(choosing a model at random in fixed proportions): `aiq_zero_router`.

Baselines on the same axes: Random (uniform among known models), Best single
(the train-best model, falling back down the train order where unknown) and
Oracle (the cheapest model that answers correctly, else the cheapest).

With the option balance_frontier (`irt-jax eval --balance_frontier`), the
result's "balance" entry holds the same summaries (AIQ over the same cost range,
peak accuracy, cost to match the best single model, PerfGain / CostSave /
ParetoDist) for the other cost rule, Avengers-Pro's balance score
(`rules.rule_score`, rule balance), swept over alpha in `BALANCE_ALPHAS`.
"""

from __future__ import annotations

import os

import numpy as np

from irt_jax import numerics
from irt_jax.routing import costs as costs_lib
from irt_jax.data import resolve
from irt_jax.evaluation import field_metrics
from irt_jax.routing import rules


# ----------------------------------------------------------------------------
# Pure summary metrics.

def convex_hull(cost: np.ndarray, quality: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Vertices of the non-decreasing upper convex hull, cheapest first."""
  cost, quality = np.asarray(cost, np.float64), np.asarray(quality, np.float64)
  order = np.lexsort((-quality, cost))
  hull: list[tuple[float, float]] = []
  for c, q in zip(cost[order], quality[order]):
    if hull and c == hull[-1][0]:
      continue  # same cost, lower quality (sorted by quality desc within a cost)
    while len(hull) >= 2:
      (c1, q1), (c2, q2) = hull[-2], hull[-1]
      # Drop the middle point when it lies on or below the chord to (c, q).
      if (q2 - q1) * (c - c1) <= (q - q1) * (c2 - c1):
        hull.pop()
      else:
        break
    hull.append((c, q))
  hc = np.array([h[0] for h in hull])
  hq = np.array([h[1] for h in hull])
  top = int(np.argmax(hq))  # first (cheapest) point of the highest quality
  return hc[:top + 1], hq[:top + 1]


def hull_quality(hull_cost: np.ndarray, hull_q: np.ndarray, c: np.ndarray) -> np.ndarray:
  """The hull's quality at costs c: linear between vertices, flat after the
  last, NaN below the first (no routing is that cheap)."""
  c = np.asarray(c, np.float64)
  out = np.interp(c, hull_cost, hull_q)
  return np.where(c < hull_cost[0], np.nan, out)


def aiq(cost: np.ndarray, quality: np.ndarray, c_max: float | None = None) -> float:
  """Mean of the non-decreasing convex hull over [min cost, c_max]."""
  hc, hq = convex_hull(cost, quality)
  lo = hc[0]
  hi = max(float(np.max(cost)), hc[-1]) if c_max is None else max(float(c_max), lo)
  if hi <= lo:
    return float(hq[-1])
  xs = np.concatenate([hc[hc < hi], [hi]])
  ys = hull_quality(hc, hq, xs)
  return float(np.trapezoid(ys, xs) / (hi - lo))


def cost_to_reach(cost: np.ndarray, quality: np.ndarray, target: float) -> float | None:
  """The least cost at which the hull reaches `target` quality (None if never)."""
  hc, hq = convex_hull(cost, quality)
  if hq[-1] < target - 1e-12:
    return None
  i = int(np.argmax(hq >= target - 1e-12))
  if i == 0:
    return float(hc[0])
  (c1, q1), (c2, q2) = (hc[i - 1], hq[i - 1]), (hc[i], hq[i])
  return float(c1 + (target - q1) * (c2 - c1) / (q2 - q1))


def pgr_curve(score: np.ndarray, strong_correct: np.ndarray,
              weak_correct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(share of queries sent to the strong model, PGR) over every threshold on
  `score` (highest score goes to the strong model first; ties go together)."""
  score = np.asarray(score, np.float64)
  s, w = np.asarray(strong_correct, np.float64), np.asarray(weak_correct, np.float64)
  n = len(score)
  gap = s.mean() - w.mean()
  if n == 0 or gap <= 0:
    raise ValueError("PGR needs a strong model more accurate than the weak one")
  order = np.argsort(-score, kind="stable")
  gain = np.concatenate([[0.0], np.cumsum((s - w)[order])]) / n
  # Only thresholds between distinct scores are realisable.
  sorted_score = score[order]
  keep = np.concatenate([[True], sorted_score[1:] != sorted_score[:-1], [True]])
  share = np.arange(n + 1) / n
  return share[keep], gain[keep] / gap


def apgr(score, strong_correct, weak_correct) -> float:
  share, pgr = pgr_curve(score, strong_correct, weak_correct)
  return float(np.trapezoid(pgr, share))


def cpt(score, strong_correct, weak_correct, level: float = 0.5) -> float | None:
  """The least share of strong-model calls whose PGR reaches `level`."""
  share, pgr = pgr_curve(score, strong_correct, weak_correct)
  hit = np.flatnonzero(pgr >= level - 1e-12)
  return float(share[hit[0]]) if len(hit) else None


# ----------------------------------------------------------------------------
# The sweep.

def default_weights(cost: np.ndarray, known: np.ndarray, n: int = 41) -> np.ndarray:
  """0, a log grid scaled to the cost spread (1e-3 .. 1e3 accuracy per unit of
  typical cost gap) and inf (always the cheapest)."""
  spread = np.std(np.where(known, cost, np.nan)[known]) or 1.0
  return np.concatenate([[0.0], np.logspace(-3, 3, n) / spread, [np.inf]])


BALANCE_ALPHAS = np.linspace(0.0, 1.0, 21)


def balance_sweep(logits: np.ndarray, labels: np.ndarray, cost: np.ndarray, known: np.ndarray,
                  alphas, base: dict) -> dict:
  """The balance rule's points over `alphas` and their summaries, against the
  baselines, single models and cost range of `base` (the linear sweep's result)."""
  points = []
  for a in alphas:
    choice = rules.choose_with_cost(logits, cost, 0.0, known, rule="balance", alpha=float(a))
    c, q = routed(choice, labels, cost)
    points.append({"alpha": float(a), "cost": c, "accuracy": q})
  pc = np.array([p["cost"] for p in points])
  pq = np.array([p["accuracy"] for p in points])
  c_max = max(base["cost_range"][1], float(pc.max()))
  out = {"points": points, "aiq": aiq(pc, pq, c_max=c_max),
         "cost_to_match_best_single": cost_to_reach(pc, pq, base["baselines"]["best_single"]
                                                    ["accuracy"]),
         "peak_accuracy": float(pq.max())}
  out["field"] = field_metrics.cost_summary({**out, "baselines": base["baselines"],
                                             "single_models": base["single_models"]})
  return out


def routed(choice: np.ndarray, labels: np.ndarray, cost: np.ndarray) -> tuple[float, float]:
  rows = np.arange(len(choice))
  return float(cost[rows, choice].mean()), float((labels[rows, choice] == 1).mean())


def frontier(logits: np.ndarray, labels: np.ndarray, cost: np.ndarray,
             train_order: np.ndarray, weights=None, alphas=None) -> dict:
  """Points, baselines and summaries for test logits [n, M], labels [n, M]
  (-1 unknown), cost [M] or [n, M] and the train best-first order; with
  `alphas`, the balance rule's sweep too (`balance_sweep`, under "balance")."""
  known = labels >= 0
  rows = np.flatnonzero(known.any(axis=1))
  logits, labels, known = np.asarray(logits, np.float64)[rows], labels[rows], known[rows]
  proba = numerics.sigmoid(logits)
  cost = np.array(np.broadcast_to(np.asarray(cost, np.float64), logits.shape))
  if (np.isnan(cost) & known).any():
    raise ValueError("a known (query, model) cell has no cost")
  weights = default_weights(cost, known) if weights is None else np.asarray(weights)
  points = []
  for w in weights:
    c, q = routed(rules.choose_with_cost(logits, cost, w, known), labels, cost)
    points.append({"cost_weight": None if np.isinf(w) else float(w), "cost": c,
                   "accuracy": q})
  pc = np.array([p["cost"] for p in points])
  pq = np.array([p["accuracy"] for p in points])

  n_known = known.sum(1)
  random = {"cost": float((np.where(known, cost, 0).sum(1) / n_known).mean()),
            "accuracy": float((np.where(known, labels == 1, 0).sum(1) / n_known).mean())}
  best = rules.choose_by_order(train_order, known)
  bc, bq = routed(best, labels, cost)
  correct = known & (labels == 1)
  # Oracle: the cheapest model that answers correctly, else the cheapest known.
  oracle = np.where(correct.any(1), rules.choose_with_cost(logits, cost, np.inf, correct),
                    rules.choose_with_cost(logits, cost, np.inf, known))
  oc, oq = routed(oracle, labels, cost)
  singles = []
  for m in range(labels.shape[1]):
    have = known[:, m]
    if have.any():
      singles.append({"model": int(m), "cost": float(cost[have, m].mean()),
                      "accuracy": float((labels[have, m] == 1).mean()),
                      "coverage": float(have.mean())})
  c_max = max([pc.max()] + [s["cost"] for s in singles])

  out = {"points": points,
         "baselines": {"random": random, "best_single": {"cost": bc, "accuracy": bq},
                       "oracle": {"cost": oc, "accuracy": oq}},
         "single_models": singles,
         "aiq": aiq(pc, pq, c_max=c_max),
         # RouterBench's zero router: random mixtures of single models (their hull).
         "aiq_zero_router": aiq([s["cost"] for s in singles], [s["accuracy"] for s in singles],
                                c_max=c_max),
         "cost_range": [float(pc.min()), float(c_max)],
         "cost_to_match_best_single": cost_to_reach(pc, pq, bq),
         "peak_accuracy": float(pq.max())}
  out.update(strong_weak(proba, labels, known, cost, train_order))
  out["field"] = field_metrics.cost_summary(out)
  if alphas is not None:
    out["balance"] = balance_sweep(logits, labels, cost, known, alphas, out)
  return out


def strong_weak(proba, labels, known, cost, train_order) -> dict:
  """RouteLLM's APGR / CPT(50%) between the train-best model and the cheapest other."""
  strong = int(train_order[0])
  mean_cost = np.array([cost[known[:, m], m].mean() if known[:, m].any() else np.inf
                        for m in range(cost.shape[1])])
  mean_cost[strong] = np.inf
  weak = int(np.argmin(mean_cost))
  both = known[:, strong] & known[:, weak]
  info = {"pair": {"strong": strong, "weak": weak, "queries": int(both.sum())}}
  s = labels[both, strong] == 1
  w = labels[both, weak] == 1
  score = proba[both, strong] - proba[both, weak]
  if not both.any() or s.mean() <= w.mean():
    info.update(apgr=None, cpt50=None, pair_note="strong model not more accurate on test")
    return info
  info["pair"].update(strong_accuracy=float(s.mean()), weak_accuracy=float(w.mean()))
  info.update(apgr=apgr(score, s, w), cpt50=cpt(score, s, w, 0.5))
  return info


# ----------------------------------------------------------------------------
# The evaluator.

def run_costs(ctx) -> costs_lib.Costs | None:
  """The costs of the run's data folder, [n_split, M] for the split's queries.
  Options: cost_source ('auto' | 'params'), tokenizer_dir, output_tokens."""
  folder = resolve.folder(ctx.run.config, ctx.run.workdir)
  opts = ctx.options or {}
  queries = ctx.data.split(ctx.split).queries
  names = list(ctx.data.model_names)
  if opts.get("cost_source") == "params":
    table = costs_lib.Costs(costs_lib.parameter_costs(names), "parameter count", "B params",
                            "a proxy: parameters, not money")
  else:
    texts = None if ctx.data.prompts is None else list(ctx.data.prompts)
    table = costs_lib.for_data_dir(
        folder, names, list(ctx.data.query_ids), texts,
        tokenizer_dir=opts.get("tokenizer_dir") or costs_lib.default_tokenizer(),
        output_tokens=float(opts.get("output_tokens", costs_lib.OUTPUT_TOKENS)))
    if table is not None:
      table = costs_lib.Costs(table.values[queries], table.source, table.unit, table.note)
  return table


class CostFrontierEvaluator:
  """Quality-vs-cost frontier of cost-aware routing on the split (its figure is
  drawn while it runs, into the option plot_dir)."""
  name = "cost_frontier"
  figure_rank = 0

  def applies(self, run, options: dict) -> bool:
    return bool(costs_lib.available(resolve.folder(run.config, run.workdir)))

  def text(self, cf: dict) -> list[str]:
    if "aiq" not in cf:
      return []
    pct = lambda x: "   n/a" if x is None else f"{100 * x:6.2f}"
    match = cf["cost_to_match_best_single"]
    return [f"  cost frontier ({cf['cost_source']}, {cf['cost_unit']}): AIQ {pct(cf['aiq'])}  "
            f"peak {pct(cf['peak_accuracy'])}  cost to match best single "
            f"{'never' if match is None else format(match, '.4g')}  APGR "
            f"{'n/a' if cf['apgr'] is None else format(cf['apgr'], '.3f')}  CPT(50%) "
            f"{pct(cf['cpt50'])}"] + field_metrics.cost_lines(cf) + balance_lines(cf)

  def markdown(self, cf: dict) -> list[str]:
    return []

  def figures(self, report: dict, out_dir: str, tag: str) -> dict[str, str]:
    return {}

  def run(self, ctx) -> dict:
    table = run_costs(ctx)
    if table is None:
      return {"skipped": f"no {costs_lib.COSTS_FILE} or {costs_lib.PRICES_FILE} in the data "
                         f"folder (pass the option cost_source=params for a size proxy)"}
    pred = ctx.predictions
    order = rules.best_single_order(ctx.data.split("train"))
    alphas = BALANCE_ALPHAS if (ctx.options or {}).get("balance_frontier") else None
    try:
      out = frontier(pred.logits, pred.labels, table.values, order, alphas=alphas)
    except ValueError as e:
      folder = resolve.folder(ctx.run.config, ctx.run.workdir)
      raise costs_lib.DataError(f"{os.path.join(folder, table.source)}: {e} (every known "
                                f"{ctx.split} cell needs a cost)") from e
    names = list(ctx.data.model_names)
    for s in out["single_models"]:
      s["model"] = names[s["model"]]
    out["pair"]["strong"] = names[out["pair"]["strong"]]
    out["pair"]["weak"] = names[out["pair"]["weak"]]
    out.update(cost_source=table.source, cost_unit=table.unit + " per query",
               cost_note=table.note)
    plot_dir = (ctx.options or {}).get("plot_dir")
    if plot_dir:
      out["plot"] = plot(out, os.path.join(plot_dir, "cost_frontier.png"),
                         title=f"{ctx.data.name} ({ctx.split})")
    return out


def balance_lines(cf: dict) -> list[str]:
  """The balance rule's sweep in the text report, if it ran."""
  if "balance" not in cf:
    return []
  b = cf["balance"]
  match = b["cost_to_match_best_single"]
  return [f"  balance rule (Avengers-Pro, alpha 0..1): AIQ {100 * b['aiq']:6.2f}  peak "
          f"{100 * b['peak_accuracy']:6.2f}  cost to match best single "
          f"{'never' if match is None else format(match, '.4g')}"
          ] + field_metrics.cost_lines(b, "balance rule")


def plot(result: dict, path: str, title: str = "") -> str:
  """Frontier, its hull and the baseline points, as a PNG."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  pc = np.array([p["cost"] for p in result["points"]])
  pq = np.array([p["accuracy"] for p in result["points"]])
  hc, hq = convex_hull(pc, pq)
  fig, ax = plt.subplots(figsize=(6, 4.2))
  ax.plot(pc, 100 * pq, ".", color="tab:blue", alpha=0.5, label="router (cost_weight sweep)")
  ax.plot(np.append(hc, result["cost_range"][1]), 100 * np.append(hq, hq[-1]), "-",
          color="tab:blue", label=f"hull (AIQ {100 * result['aiq']:.1f})")
  if "balance" in result:
    bc = [p["cost"] for p in result["balance"]["points"]]
    bq = [100 * p["accuracy"] for p in result["balance"]["points"]]
    ax.plot(bc, bq, ".-", color="tab:purple", alpha=0.6,
            label=f"balance rule, alpha sweep (AIQ {100 * result['balance']['aiq']:.1f})")
  for s in result["single_models"]:
    ax.plot(s["cost"], 100 * s["accuracy"], "x", color="grey")
  styles = {"random": ("tab:orange", "s"), "best_single": ("tab:green", "^"),
            "oracle": ("tab:red", "*")}
  for name, (color, marker) in styles.items():
    b = result["baselines"][name]
    ax.plot(b["cost"], 100 * b["accuracy"], marker, color=color, markersize=9,
            label=name.replace("_", " "))
  ax.set_xlabel(f"mean cost ({result.get('cost_unit', 'per query')})")
  ax.set_ylabel("accuracy (%)")
  ax.set_title(title + ("; x: single models" if result["single_models"] else ""))
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8, loc="lower right")
  fig.tight_layout()
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return path
