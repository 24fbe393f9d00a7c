"""README's "Bring your own evaluations" commands, run as written on real lm-eval output of
three models (tests/fixtures/lm_eval): build -> train -> serve, then a routed chat request.

The commands are read from README.md, so the section cannot drift from what works. Paths are
pointed at the fixture and a temporary folder; MiniLM stands in for MPNet (CI fetches
MiniLM only) and the recommended recipe gets test-sized overrides; the encoder fetch (network)
is checked by name and skipped."""

import json
import os
import re
import shlex
import subprocess
import sys

import httpx
import pytest

from tests.conftest import MINILM_DIR, REPO, needs_encoder
from tests.stub_upstream import _free_port

pytest_plugins = ["tests.serve_fixtures"]   # stub: an OpenAI-compatible upstream

SMALL = ["--config.members.irtnet.model.n_experts=2", "--config.members.irtnet.model.top_k=2",
         "--config.members.irtnet.model.hidden_dim=16", "--config.members.irtnet.model.output_dim=8",
         "--config.members.irtnet.model.ability_dim=4", "--config.members.irtnet.train.num_epochs=2"]


def readme_commands() -> list[list[str]]:
  with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
    text = f.read()
  section = text.split("## Bring your own evaluations", 1)[1]
  block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
  return [shlex.split(line) for line in block.replace("\\\n", " ").splitlines() if line.strip()]


def test_readme_section_is_fetch_build_train_serve():
  steps = [c[1:4] if c[1] == "-m" else c[1:2] for c in readme_commands()]
  assert steps == [["-m", "irt_jax", "fetch-encoder"], ["-m", "irt_jax", "build-data"], ["train.py"],
                   ["-m", "irt_jax", "serve"]]


def _wait(url, proc, seconds=300):
  import time
  for _ in range(seconds * 5):
    try:
      if httpx.get(url + "/health", timeout=1).status_code == 200:
        return
    except httpx.HTTPError:
      pass
    assert proc.poll() is None, proc.stdout.read()
    time.sleep(0.2)
  raise AssertionError("the service did not start")


def _localise(command, tmp, port):
  fixture = os.path.join(REPO, "tests", "fixtures", "lm_eval")
  out = []
  for arg in command:
    arg = arg.replace("lm_eval_out/", fixture).replace("data/mine", str(tmp / "data" / "mine"))
    arg = arg.replace("runs/mine", str(tmp / "runs" / "mine"))
    arg = arg.replace(".models/all-mpnet-base-v2", MINILM_DIR)
    arg = arg.replace("upstreams.json", str(tmp / "upstreams.json")).replace("--port=8000", f"--port={port}")
    out.append(sys.executable if arg == ".venv/bin/python" else arg)
  return out


@pytest.mark.slow  # encodes 64 prompts, trains the recipe's two members, starts the service
@needs_encoder(MINILM_DIR)
def test_readme_commands_build_train_and_serve_three_lm_eval_models(tmp_path, stub):
  (tmp_path / "data").mkdir()
  port = _free_port()
  fetch, build, train, serve = [_localise(c, tmp_path, port) for c in readme_commands()]
  assert fetch[1:4] == ["-m", "irt_jax", "fetch-encoder"]  # network: not run here
  done = subprocess.run(build + [f"--encoder_dir={MINILM_DIR}"], cwd=REPO, capture_output=True,
                        text=True, timeout=600)
  assert done.returncode == 0, done.stderr
  assert done.stdout.splitlines()[0].endswith(": 3 models x 64 queries, 64 of 192 cells known (33.3%)")
  done = subprocess.run(train + SMALL, cwd=REPO, capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]
  models = ["EleutherAI/pythia-2.8b", "RylanSchaeffer/mem_Qwen3-93M_minerva_math_rep_0_sbst_1.0000_epch_1_ot_1",
            "meta-llama/Meta-Llama-3-8B-Instruct"]
  (tmp_path / "upstreams.json").write_text(json.dumps({m: {"base_url": stub} for m in models}))
  proc = subprocess.Popen(serve + ["--log_level=warning"], cwd=REPO, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
  try:
    url = f"http://127.0.0.1:{port}"
    _wait(url, proc)
    name = httpx.get(url + "/v1/models").json()["data"][0]["id"]
    reply = httpx.post(url + "/v1/chat/completions", timeout=120, json={
        "model": name, "messages": [{"role": "user", "content": "How many apples are left?"}]}).json()
    assert reply["model"] in models
    assert reply["choices"][0]["message"]["content"] == f"answer from {reply['model']}"
  finally:
    proc.terminate()
    proc.wait(timeout=30)
