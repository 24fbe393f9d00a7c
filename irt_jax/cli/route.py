r"""`irt-jax route`: routes queries given on the command line or in a JSONL file.

  irt-jax route --workdir=runs/routerdc --encoder_dir=.models/all-mpnet-base-v2 \
      "What is 17 * 23?" "Write a haiku about rain."
  irt-jax route --workdir=DIR --input=queries.jsonl --json   # {"query": ...} per line
  irt-jax route --workdir=DIR --costs=prices.json --cost_rule=balance --alpha=0.7 "..."

Prints one chosen model name per line (with --json, one JSON record per line:
query, model, p_correct, logit, expected_cost, runner_up, runner_up_p; with --explain,
one explanation per line: Router.explain, docs/explain.md).
"""

import json
import os
import sys

from absl import app
from absl import flags

from irt_jax import logs
from irt_jax.cli import flags as cli_flags

FLAGS = flags.FLAGS


def define_flags() -> None:
  cli_flags.define_router_flags()
  flags.DEFINE_string("input", None, "JSONL file, one object per line with a \"query\" or "
                      "\"prompt\" string ('-' = stdin).")
  flags.DEFINE_bool("json", False, "Print one JSON record per query instead of the model name.")
  flags.DEFINE_bool("explain", False, "Print one JSON explanation per query (Router.explain: per "
                    "model P(correct), cost, the rule's score; the choice and its margin; the "
                    "query's item parameters and nearest training queries). No --budget.")
  flags.DEFINE_float("cost_weight", 0.0, "Route on P(correct) - cost_weight * cost (needs "
                     "--costs).")
  flags.DEFINE_string("cost_rule", "linear", "linear: P(correct) - cost_weight * cost; balance: "
                      "Avengers-Pro's alpha * normalised P + (1 - alpha) * (1 - cost / max cost) "
                      "over the candidates (needs --costs and --alpha; docs/routing.md).")
  flags.DEFINE_float("alpha", None, "The balance rule's weight in [0, 1]: 1 routes on P(correct) "
                     "alone, 0 to the cheapest.")
  flags.DEFINE_float("budget", None, "Cap on the mean cost over the queries given (needs "
                     "--costs).")
  flags.DEFINE_list("candidates", None, "Only route among these model names.")


def read_queries(path: str) -> list[str]:
  """Queries from a JSONL file; a bad line raises ValueError naming its number."""
  queries = []
  stream = sys.stdin if path == "-" else open(path, encoding="utf-8")
  with stream:
    for number, line in enumerate(stream, start=1):
      if not line.strip():
        continue
      try:
        obj = json.loads(line)
      except ValueError as e:
        raise ValueError(f"{path} line {number}: not JSON ({e})") from None
      text = obj.get("query", obj.get("prompt")) if isinstance(obj, dict) else None
      if not isinstance(text, str):
        raise ValueError(f'{path} line {number}: needs a "query" or "prompt" string field')
      queries.append(text)
  return queries


def _queries(argv) -> list[str]:
  queries = list(argv[1:])
  if FLAGS.input and queries:
    raise app.UsageError("give queries as arguments or --input, not both")
  if FLAGS.input:               # read (and fail on a bad line) before the heavy imports
    try:
      queries = read_queries(FLAGS.input)
    except OSError as e:
      sys.exit(f"route: {FLAGS.input}: {e.strerror}")
    except ValueError as e:
      sys.exit(f"route: {e}")
  if not queries:
    raise app.UsageError("no queries: pass them as arguments or --input=FILE.jsonl")
  return queries


def main(argv):
  cli_flags.require("workdir")
  if not os.path.isdir(FLAGS.workdir):
    sys.exit(f"route: --workdir {FLAGS.workdir} does not exist")
  if FLAGS.explain and FLAGS.budget is not None:
    raise app.UsageError("--explain takes --cost_weight, not --budget (a budget is shared by "
                         "the queries of one call)")
  queries = _queries(argv)

  from irt_jax.routing import router as router_lib
  from irt_jax.routing import rules

  logs.quiet_startup()
  with cli_flags.user_errors("route"):
    rules.check_rule(FLAGS.cost_rule, FLAGS.alpha, FLAGS.cost_weight, FLAGS.budget)
    if FLAGS.cost_rule == "balance" and not FLAGS.costs:
      raise ValueError("--cost_rule=balance needs --costs (a JSON file model name -> cost or a "
                       "model_prices.csv)")
    rule = {"rule": FLAGS.cost_rule, "alpha": FLAGS.alpha}
    router = router_lib.load(FLAGS.workdir, FLAGS.encoder_dir, FLAGS.step, FLAGS.costs,
                             encoder_precision=FLAGS.encoder_precision)
    if FLAGS.explain:
      for record in router.explain(queries, FLAGS.cost_weight, FLAGS.candidates, **rule):
        print(json.dumps(record))
      return
    routes = router.route(queries, FLAGS.cost_weight, FLAGS.budget, FLAGS.candidates, **rule)
  for query, r in zip(queries, routes):
    print(json.dumps({"query": query, **r.to_dict()}) if FLAGS.json else r.model)
