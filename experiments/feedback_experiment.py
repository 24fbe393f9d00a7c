r"""Does feedback from routed answers improve routing? (llmrouter, real labels)

  nice -n 10 .venv/bin/python train.py --config=configs/synthetic.py \
      --config.data.dir=../shared/data/llmrouter --workdir=runs/llmrouter_small
  nice -n 10 .venv/bin/python -m experiments.feedback_experiment --workdir=runs/llmrouter_small \
      --out=runs/feedback_experiment --record=docs/results/feedback_llmrouter.jsonl

A deployed router's belief about one LLM goes wrong (the LLM is updated, or was
mis-estimated): its ability is replaced by that of another LLM pushed further
from the mean ability (source + --push * (source - mean); a plain copy would tie
with the source, and ties leave routing as it was); in an ensemble run (the
recipe) the same is done to every member's per-LLM parameters (`perturb`), in
two ways:
  * underrated: the LLM with the best train accuracy gets the worst one's ability;
  * overrated:  the LLM with the worst train accuracy gets the best one's ability.
Feedback is then simulated from that LLM's own train-split labels: k answers,
drawn at random (seeded), written through the service's log writer
(coldstart.feedback.FeedbackLog) with their query text, and fed to the same
code as `python -m irt_jax update` (coldstart.feedback.update; 20% of the
log's queries held out for its report; prior_scale 1, not tuned). Routing is
then measured on the test split, read once here for this table: the share of
test queries answered correctly by the chosen LLM (highest logit), for the
trained run, the perturbed one and the updated one, with a paired bootstrap
95% interval (2,000 resamples of test queries) of updated minus perturbed.
--table_from=docs/results/feedback_llmrouter.jsonl prints the table of a record.
"""

from __future__ import annotations

import json
import os
import shutil
import sys

import numpy as np  # noqa: E402
from absl import app, flags, logging  # noqa: E402

from irt_jax import logs, predictors  # noqa: E402
from irt_jax.coldstart import ability, feedback, members  # noqa: E402
from irt_jax.data import resolve  # noqa: E402
from irt_jax.routing import rules  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", "runs/llmrouter_small", "A trained llmrouter run (irtnet, or "
                    "an ensemble such as configs/recommended.py).")
flags.DEFINE_string("out", "runs/feedback_experiment", "Scratch folder (perturbed and updated runs).")
flags.DEFINE_list("ks", ["25", "100", "400", "1600"], "Feedback records per scenario.")
flags.DEFINE_float("push", 0.5, "How far past the source's ability the perturbation goes.")
flags.DEFINE_integer("seed", 0, "Seed of the feedback draws and the bootstrap.")
flags.DEFINE_string("record", None, "JSON-lines file the results are appended to.")
flags.DEFINE_string("table_from", None, "Only print the table of a record file written before.")


def routed_correct(predictor, data) -> np.ndarray:
  """Per test query: 1 if the highest-logit LLM answered it correctly."""
  test = data.splits["test"]
  logits = np.asarray(predictor.logits(data.embeddings[test.queries]))
  choice = rules.choose_by_score(logits, test.mask)
  return test.labels[np.arange(len(choice)), choice].astype(np.float64)


def paired_interval(new: np.ndarray, old: np.ndarray, seed: int, n: int = 2000) -> list[float]:
  rng = np.random.default_rng(seed)
  diff = new - old
  means = [diff[rng.integers(0, len(diff), len(diff))].mean() for _ in range(n)]
  return [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]


def write_log(path: str, data, model: int, k: int, seed: int) -> int:
  """k of the LLM's train-split answers as feedback records (query text, name, label)."""
  train = data.splits["train"]
  rows = np.flatnonzero(train.mask[:, model])
  rows = np.random.default_rng(seed).permutation(rows)[:k]
  log = feedback.FeedbackLog(path)
  for r in rows:
    log.append({"id": None, "query": data.prompts[train.queries[r]],
                "model": data.model_names[model], "correct": int(train.labels[r, model])})
  log.close()
  return len(rows)


def _pushed(values: np.ndarray, target: int, source: int, axis: int) -> np.ndarray:
  """`values` with the target LLM's slice set to the source's pushed from the mean."""
  out = np.array(values, np.float64)
  src = np.take(out, source, axis)
  pushed = src + FLAGS.push * (src - out.mean(axis))
  if axis == 0:
    out[target] = pushed
  else:
    out[:, target] = pushed
  return out.astype(np.asarray(values).dtype)


def perturb(predictor, target: int, source: int):
  """The predictor believing `target` is like `source` (pushed): an ability for
  kinds with one; for an ensemble (the recipe), the same in every member with
  per-LLM parameters (IrtNet-family abilities, logreg's weight column and bias,
  knn's label column and prior, set to the source's), the other members as they are."""
  if not predictor.kind.takes_members:
    return feedback.with_abilities(predictor, _pushed(ability.abilities(predictor), target,
                                                      source, 0))
  params = {**predictor.params, "members": {}}
  for i, member in enumerate(members.members_of(predictor)):
    p = member.params
    if member.kind.irt is not None:
      p = perturb(member, target, source).params
    elif member.kind.name == "logreg":
      p = {"w": _pushed(p["w"], target, source, 1), "b": _pushed(p["b"], target, source, 0)}
    elif member.kind.name == "knn":
      p = dict(p)
      for key in ("labels", "mask"):
        p[key] = np.array(p[key])
        p[key][:, target] = p[key][:, source]
      p["prior"] = np.array(p["prior"])
      p["prior"][target] = p["prior"][source]
    params["members"][f"m{i}"] = p
  return predictor.with_params(params)


def scenario(name: str, run, data, target: int, source: int, out: str) -> list[dict]:
  """Perturb `target`'s belief to `source`'s, then update from k feedback records."""
  perturbed = perturb(run.predictor, target, source)
  base = os.path.join(out, name)
  shutil.rmtree(base, ignore_errors=True)
  feedback.save(run, perturbed, os.path.join(base, "perturbed"), resolve.folder(
      run.config, run.workdir), {"perturbed": True, "ability_of": data.model_names[source],
                                 "push": FLAGS.push})
  trained = routed_correct(run.predictor, data)
  wrong = routed_correct(perturbed, data)
  records = []
  for k in [int(x) for x in FLAGS.ks]:
    folder = os.path.join(base, f"k{k}")
    os.makedirs(folder)
    log = os.path.join(folder, "feedback.jsonl")
    n = write_log(log, data, target, k, FLAGS.seed)
    report = feedback.update(os.path.join(base, "perturbed"), log, os.path.join(folder, "run"))
    updated = routed_correct(predictors.load(os.path.join(folder, "run")).predictor, data)
    held = report["heldout_report"]
    records.append({
        "experiment": "feedback_llmrouter", "scenario": name, "kind": run.kind.name,
        "llm": data.model_names[target], "ability_of": data.model_names[source],
        "feedback_records": n, "fitted_records": report["fitted_records"],
        "test_queries": int(len(updated)),
        "routing_trained": float(trained.mean()), "routing_perturbed": float(wrong.mean()),
        "routing_updated": float(updated.mean()),
        "gain_vs_perturbed": float((updated - wrong).mean()),
        "gain_ci95": paired_interval(updated, wrong, FLAGS.seed),
        "heldout_log_loss": [held.get("before", {}).get("log_loss"),
                             held.get("after", {}).get("log_loss")],
        "workdir": run.workdir, "seed": FLAGS.seed, "push": FLAGS.push,
        "prior_scale": 1.0})
    logging.info("%s k=%d: routing %.4f -> %.4f (trained %.4f)", name, n, wrong.mean(),
                 updated.mean(), trained.mean())
  return records


def main(argv):
  del argv
  if FLAGS.table_from:
    with open(FLAGS.table_from, encoding="utf-8") as f:
      return print_table([json.loads(line) for line in f if line.strip()])
  logs.quiet_startup()
  run = predictors.load(FLAGS.workdir)
  data = resolve.load_for_run(run.config, FLAGS.workdir)
  train = data.splits["train"]
  accuracy = np.where(train.mask, train.labels, 0).sum(0) / train.mask.sum(0)
  best, worst = int(np.argmax(accuracy)), int(np.argmin(accuracy))
  records = (scenario("underrated", run, data, best, worst, FLAGS.out) +
             scenario("overrated", run, data, worst, best, FLAGS.out))
  if FLAGS.record:
    with open(FLAGS.record, "a", encoding="utf-8") as f:
      for r in records:
        f.write(json.dumps(r) + "\n")
  print_table(records)


def print_table(records: list[dict]) -> None:
  print("| scenario | LLM | k (fitted) | routing: trained | perturbed | updated | "
        "updated - perturbed [95% CI] | held-out log loss before -> after |")
  print("|---|---|---:|---:|---:|---:|---|---|")
  for r in records:
    lo, hi = r["gain_ci95"]
    before, after = r["heldout_log_loss"]
    print(f"| {r['scenario']} | {r['llm']} | {r['feedback_records']} ({r['fitted_records']}) | "
          f"{100 * r['routing_trained']:.2f} | {100 * r['routing_perturbed']:.2f} | "
          f"{100 * r['routing_updated']:.2f} | {100 * r['gain_vs_perturbed']:+.2f} "
          f"[{100 * lo:+.2f}, {100 * hi:+.2f}] | {before:.3f} -> {after:.3f} |")


if __name__ == "__main__":
  app.run(main)
