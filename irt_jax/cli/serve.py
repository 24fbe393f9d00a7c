r"""`irt-jax serve`: serves a trained run as an OpenAI-compatible router (flags ->
serving.create_app -> uvicorn).

  irt-jax serve --workdir=runs/routerdc --encoder_dir=.models/all-mpnet-base-v2 \
      --upstreams=upstreams.json --port=8000 \
      [--api_keys_file=keys.txt --admin_keys_file=admin.txt --feedback_log=feedback.jsonl]
  # then, with the openai client: base_url="http://127.0.0.1:8000/v1", model="router-irtnet"

The encoder loads (and compiles) once, before the port opens. SIGHUP re-reads the
keys files and reloads the run (e.g. a new best step); POST /admin/reload (an
admin key) reloads it or another run ({"workdir": ...}). See docs/serving.md.
"""

import os
import sys

from absl import flags

from irt_jax import logs
from irt_jax.cli import flags as cli_flags
from irt_jax.serving import app as serving

_LIMITS = serving.Limits()
_FALLBACKS = serving.Fallbacks()
FLAGS = flags.FLAGS


def define_flags() -> None:
  cli_flags.define_router_flags(
      precision_extra=", kept across reloads",
      costs_extra=" Enables router-<kind>-<cost_weight> and /route's cost_weight, budget.")
  flags.DEFINE_string("host", "127.0.0.1", "Address to listen on (0.0.0.0 exposes it to the "
                      "network).")
  flags.DEFINE_integer("port", 8000, "Port to listen on.")
  flags.DEFINE_string("upstreams", None, 'JSON file: {"<model>": {"base_url": "http://.../v1", '
                      '"api_key_env": "VAR", "model": "<upstream model id>"}}.')
  flags.DEFINE_string("api_keys_file", None, "File of API keys, one per line: requests without "
                      "'Authorization: Bearer <one of them>' get 401 (/health stays open). "
                      "Re-read when it changes and on SIGHUP. Without it anyone may call.")
  flags.DEFINE_string("admin_keys_file", None, "File of admin keys (same format) for POST "
                      "/admin/reload; without it that endpoint is off (SIGHUP still reloads).")
  flags.DEFINE_string("feedback_log", None, "JSON-lines file POST /v1/feedback appends to "
                      "(fsynced per record); without it /v1/feedback is off.")
  flags.DEFINE_string("store", None, "Where feedback and spend are kept: unset or 'file' for "
                      "--feedback_log (JSON lines), or postgresql://user@host/db for a database "
                      "that several replicas share (turns on /v1/feedback). See docs/gateway.md.")
  flags.DEFINE_string("spend_log", None, "With the file store: a JSON-lines file of every "
                      "charged answer (key digest, model, USD, tokens), which all workers read "
                      "for budgets; without it spend is counted in each process's memory.")
  flags.DEFINE_string("prices", None, "model_prices.csv (model_name, input_price_per_mtok, "
                      "output_price_per_mtok): each answer's usage x these prices is the spend "
                      "per key and model (/metrics, the store) that keys' budget_usd is checked "
                      "against.")
  flags.DEFINE_float("calibrate_above", None, "Offer router-<kind>@share=S: the cost weight "
                     "whose share of the run's validation queries routed to models costing more "
                     "than this (--costs' unit, per query) is at most S. Needs --costs.")
  flags.DEFINE_integer("workers", 1, "Service processes sharing the port (each loads the run; "
                       "metrics, the store, keys and reloads are shared, cool-downs are per "
                       "worker: serving/workers.py).")
  flags.DEFINE_integer("socket_fd", None, "Internal (--workers): accept on this inherited "
                       "listening socket instead of binding --host:--port.")
  flags.DEFINE_integer("fallbacks", _FALLBACKS.fallbacks, "Further ranked models tried when the "
                       "chosen model's upstream fails before answering.")
  flags.DEFINE_float("cooldown_s", _FALLBACKS.cooldown_s, "Seconds a model whose upstream keeps "
                     "failing goes to the back of every ranking.")
  flags.DEFINE_integer("cooldown_failures", _FALLBACKS.failures, "Failures in a row that start a "
                       "cool-down.")
  flags.DEFINE_float("deadline_s", _FALLBACKS.deadline_s, "Seconds for all tries of one chat "
                     "request together.")
  flags.DEFINE_integer("max_queries", _LIMITS.max_queries, "Queries per /route request.")
  flags.DEFINE_integer("max_query_chars", _LIMITS.max_query_chars, "Characters per query.")
  flags.DEFINE_integer("max_body_bytes", _LIMITS.max_body_bytes, "Request body size.")
  flags.DEFINE_float("upstream_timeout_s", _LIMITS.upstream_timeout_s,
                     "Seconds to wait for an upstream (connect and each read).")
  flags.DEFINE_integer("max_batch_queries", _LIMITS.max_batch_queries,
                       "Queries encoded together across concurrent requests.")
  flags.DEFINE_integer("keep_alive_s", 75, "Seconds an idle client connection is kept open; "
                       "longer than clients keep theirs (httpx, the openai client: 5 s), so a "
                       "client never sends on a connection the service is closing.")
  flags.DEFINE_string("log_level", "info", "uvicorn's log level.")
  flags.DEFINE_integer("warm_up_tokens", 0, "Before the port opens, compile the encoder's "
                       "programs for queries of up to this many tokens at every batch size the "
                       "service can form (e.g. 64; MPNet takes seconds a program). 0: only the "
                       "one-query warm-up, and each new shape compiles on its first request.")
  flags.DEFINE_string("compilation_cache_dir", None, "A directory where JAX keeps compiled "
                      "programs between starts (a restart's warm-up then reads them instead of "
                      "compiling). Its contents run as code: keep it private to this user.")


def build_app():
  """The app the flags describe; a user's mistake ends in one line (sys.exit)."""
  from irt_jax.routing import router as router_lib
  from irt_jax.serving.budgets import read_prices
  from irt_jax.serving.calibrate import Calibration, validation_queries
  from irt_jax.serving.keys import KeyFile
  from irt_jax.serving.store import open_store
  from irt_jax.serving.workers import shared_reloader

  logs.quiet_startup()
  load = lambda workdir, old: router_lib.load(workdir or old.workdir, FLAGS.encoder_dir,
                                              FLAGS.step, FLAGS.costs, reuse=old,
                                              encoder_precision=FLAGS.encoder_precision)
  with cli_flags.user_errors("serve", also=(OSError,)):   # an unreadable upstreams file
    upstreams = serving.load_upstreams(FLAGS.upstreams) if FLAGS.upstreams else {}
    access = serving.Access(
        keys=KeyFile(FLAGS.api_keys_file) if FLAGS.api_keys_file else None,
        admin_keys=KeyFile(FLAGS.admin_keys_file) if FLAGS.admin_keys_file else None)
    router = router_lib.load(FLAGS.workdir, FLAGS.encoder_dir, FLAGS.step, FLAGS.costs,
                             encoder_precision=FLAGS.encoder_precision)
    router.logits(["warm up"])      # the encoder loads here, once; errors end here
    if FLAGS.warm_up_tokens > 0:
      warm_up_encoder(router.encoder, FLAGS.warm_up_tokens)
    limits = serving.Limits(max_queries=FLAGS.max_queries, max_query_chars=FLAGS.max_query_chars,
                            max_body_bytes=FLAGS.max_body_bytes,
                            upstream_timeout_s=FLAGS.upstream_timeout_s,
                            max_batch_queries=FLAGS.max_batch_queries)
    fallbacks = serving.Fallbacks(fallbacks=FLAGS.fallbacks, cooldown_s=FLAGS.cooldown_s,
                                  failures=FLAGS.cooldown_failures, deadline_s=FLAGS.deadline_s)
    store = open_store(FLAGS.store, FLAGS.feedback_log, FLAGS.spend_log)
    prices = read_prices(FLAGS.prices, set(router.model_names) | set(upstreams)) if (
        FLAGS.prices) else None
    calibration = None if FLAGS.calibrate_above is None else Calibration(
        FLAGS.calibrate_above, validation_queries)
    app_ = serving.create_app(router, upstreams, limits, fallbacks=fallbacks, access=access,
                              store=store, reloader=shared_reloader(load), prices=prices,
                              calibration=calibration, settle_gc=True)
  unknown = sorted(set(upstreams) - set(router.model_names))
  if unknown:
    print(f"serve: upstreams {unknown} are not among the run's models; they pass through "
          f"by name only", file=sys.stderr)
  if access.keys is None:
    print("serve: no --api_keys_file: anyone who can reach the port may call", file=sys.stderr)
  return app_


def warm_up_encoder(encoder, max_tokens: int) -> None:
  """--warm_up_tokens: the Router's encoder compiles its short-query shapes now."""
  if not hasattr(encoder, "warm_up"):
    print("serve: --warm_up_tokens: this run's encoder has nothing to compile", file=sys.stderr)
    return
  import time
  start = time.perf_counter()
  n = encoder.warm_up(max_tokens)
  print(f"serve: compiled {n} encoder programs for queries of up to {max_tokens} tokens in "
        f"{time.perf_counter() - start:.1f} s", file=sys.stderr)


def use_compilation_cache(directory: str) -> None:
  """--compilation_cache_dir: every compiled program is kept (none is too quick to keep)."""
  import jax
  os.makedirs(directory, mode=0o700, exist_ok=True)
  jax.config.update("jax_compilation_cache_dir", directory)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)


def main(argv):
  cli_flags.no_arguments(argv)
  cli_flags.require("workdir")
  if not os.path.isdir(FLAGS.workdir):
    sys.exit(f"serve: --workdir {FLAGS.workdir} does not exist")
  if FLAGS.workers > 1:
    from irt_jax.serving import workers
    sys.exit(workers.supervise([sys.executable, "-m", "irt_jax", "serve"], sys.argv[2:],
                               FLAGS.workers, FLAGS.host, FLAGS.port))
  if FLAGS.compilation_cache_dir:
    try:
      use_compilation_cache(FLAGS.compilation_cache_dir)
    except OSError as e:
      sys.exit(f"serve: --compilation_cache_dir: {e}")
  app_ = build_app()
  import uvicorn
  if FLAGS.socket_fd is not None:            # a worker of --workers
    from irt_jax.serving.workers import socket_from_fd
    uvicorn.Server(uvicorn.Config(app_, log_level=FLAGS.log_level,
                                  timeout_keep_alive=FLAGS.keep_alive_s)).run(
        sockets=[socket_from_fd(FLAGS.socket_fd)])
    return
  uvicorn.run(app_, host=FLAGS.host, port=FLAGS.port, log_level=FLAGS.log_level,
              timeout_keep_alive=FLAGS.keep_alive_s)
