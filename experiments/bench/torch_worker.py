"""sentence-transformers in its own process, timed on request: the torch side of
experiments/bench/run.py's encoder_speed_vs_torch (torch is not a dependency of irt_jax).

Run by experiments/bench/run.py with a Python that has torch and sentence-transformers (a
separate venv, e.g. ``python3 -m venv .venv-torch && .venv-torch/bin/pip install
torch sentence-transformers``; --torch_python or $IRT_JAX_TORCH_PYTHON points at it). Protocol, one
JSON object a line: the first line on stdin is {"model_dir", "max_length", "threads"};
each later line {"texts", "batch_size"} is answered on stdout by {"seconds",
"embeddings"} (seconds of st.encode alone, no pipe time). An empty line ends it.
"""

import json
import sys
import time


def main() -> None:
  import torch
  from sentence_transformers import SentenceTransformer

  setup = json.loads(sys.stdin.readline())
  torch.set_num_threads(int(setup["threads"]))
  model = SentenceTransformer(setup["model_dir"], device="cpu")
  model.max_seq_length = int(setup["max_length"])
  print(json.dumps({"ready": True, "threads": torch.get_num_threads(),
                    "torch": torch.__version__}), flush=True)
  for line in sys.stdin:
    if not line.strip():
      break
    req = json.loads(line)
    with torch.inference_mode():
      t = time.perf_counter()
      vecs = model.encode(req["texts"], batch_size=int(req["batch_size"]),
                          convert_to_numpy=True, show_progress_bar=False)
      seconds = time.perf_counter() - t
    print(json.dumps({"seconds": seconds, "embeddings": vecs.tolist()}), flush=True)


if __name__ == "__main__":
  main()
