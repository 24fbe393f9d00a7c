r"""Serves a trained run as an OpenAI-compatible router: flags -> serving.create_app -> uvicorn.

  python -m irt_jax.serve --workdir=runs/routerdc --encoder_dir=.models/all-mpnet-base-v2 \
      --upstreams=upstreams.json --port=8000
  # then, with the openai client: base_url="http://127.0.0.1:8000/v1", model="router-irtnet"

The encoder loads (and compiles) once, before the port opens.
"""

import os
import sys

from absl import app
from absl import flags

from irt_jax import logs
from irt_jax.serving import app as serving

_DEFAULTS = serving.Limits()
FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "The trained run's workdir.")
flags.DEFINE_string("encoder_dir", None, "Query encoder folder (default: the one the run "
                    "recorded).")
flags.DEFINE_string("step", "best", "'best' (by val accuracy), 'latest' or a step number.")
flags.DEFINE_string("host", "127.0.0.1", "Address to listen on (0.0.0.0 exposes it to the "
                    "network).")
flags.DEFINE_integer("port", 8000, "Port to listen on.")
flags.DEFINE_string("upstreams", None, 'JSON file: {"<model>": {"base_url": "http://.../v1", '
                    '"api_key_env": "VAR", "model": "<upstream model id>"}}.')
flags.DEFINE_string("costs", None, "Costs: a JSON file model name -> cost per query, or a "
                    "model_prices.csv (USD per million tokens; each query priced by its tokens). "
                    "Enables router-<kind>-<cost_weight> and /route's cost_weight, budget.")
flags.DEFINE_integer("max_queries", _DEFAULTS.max_queries, "Queries per /route request.")
flags.DEFINE_integer("max_query_chars", _DEFAULTS.max_query_chars, "Characters per query.")
flags.DEFINE_integer("max_body_bytes", _DEFAULTS.max_body_bytes, "Request body size.")
flags.DEFINE_float("upstream_timeout_s", _DEFAULTS.upstream_timeout_s,
                   "Seconds to wait for an upstream (connect and each read).")
flags.DEFINE_integer("max_batch_queries", _DEFAULTS.max_batch_queries,
                     "Queries encoded together across concurrent requests.")
flags.DEFINE_string("log_level", "info", "uvicorn's log level.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if not FLAGS.workdir:
    raise app.UsageError("--workdir is required")
  if not os.path.isdir(FLAGS.workdir):
    sys.exit(f"serve: --workdir {FLAGS.workdir} does not exist")
  from irt_jax import checkpoint
  from irt_jax.routing import costs as costs_lib
  from irt_jax.data import io as data_lib
  from irt_jax.routing import router as router_lib
  from irt_jax.encoder import EncoderError

  logs.quiet_startup()
  limits = serving.Limits(max_queries=FLAGS.max_queries, max_query_chars=FLAGS.max_query_chars,
                          max_body_bytes=FLAGS.max_body_bytes,
                          upstream_timeout_s=FLAGS.upstream_timeout_s,
                          max_batch_queries=FLAGS.max_batch_queries)
  try:
    upstreams = serving.load_upstreams(FLAGS.upstreams) if FLAGS.upstreams else {}
    step = FLAGS.step if FLAGS.step in ("best", "latest") else int(FLAGS.step)
    router = router_lib.Router.from_checkpoint(FLAGS.workdir, FLAGS.encoder_dir, step)
    if FLAGS.costs:
      router = router.with_costs(costs_lib.for_routing(
          FLAGS.costs, router.model_names, tokenizer_dir=costs_lib.default_tokenizer()))
    router.logits(["warm up"])      # the encoder loads here, once; errors end here
  except (checkpoint.CheckpointError, data_lib.DataError, EncoderError, ValueError) as e:
    sys.exit(f"serve: {e}")
  unknown = sorted(set(upstreams) - set(router.model_names))
  if unknown:
    print(f"serve: upstreams {unknown} are not among the run's models; they pass through "
          f"by name only", file=sys.stderr)
  import uvicorn
  uvicorn.run(serving.create_app(router, upstreams, limits), host=FLAGS.host, port=FLAGS.port,
              log_level=FLAGS.log_level)


if __name__ == "__main__":
  app.run(main)
