"""One service replica for the store tests, as its own process (so a test can kill -9 it):

  python -m tests.store_replica PORT STORE [SPEND_LOG]      (from the repository root)

The app of irt_jax.serving with a three-model router that needs no run (constant
logits, the hash encoder) and the store STORE ("file:<feedback log>" or a
postgresql:// URL); prints "ready" once it listens.
"""

import sys

import numpy as np
import uvicorn

from irt_jax.routing.router import Router
from irt_jax.serving import app as serving
from irt_jax.serving.store import open_store
from tests.fake_encoder import HashEncoder

MODELS = ("m0", "m1", "m2")


class Constant:
  model_names, input_dim = MODELS, 8

  def logits(self, embeddings):
    return np.zeros((len(embeddings), len(MODELS)), np.float32)


def main(port: int, spec: str, spend_log: str | None = None) -> None:
  if spec.startswith("file:"):
    store = open_store("file", spec[5:], spend_log)
  else:
    store = open_store(spec)
  router = Router.from_predictor(Constant(), HashEncoder(Constant.input_dim), name="const")
  app = serving.create_app(router, store=store)
  config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
  server = uvicorn.Server(config)
  print("ready", flush=True)
  server.run()


if __name__ == "__main__":
  main(int(sys.argv[1]), sys.argv[2], *sys.argv[3:])
