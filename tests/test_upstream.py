"""`download --dataset=llmrouter` rebuilt from the upstream repository: a committed slice of
it (tests/fixtures/llmrouter_upstream) against facts counted here from its raw files, and,
where a full upstream copy and ../shared/data are both present, file-by-file equality."""

import filecmp
import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from irt_jax.data import upstream
from tests.conftest import MPNET_DIR, REPO, SHARED_DATA, needs_shared_data

SLICE = os.path.join(REPO, "tests", "fixtures", "llmrouter_upstream")
FULL = os.environ.get("IRT_JAX_LLMROUTER_SOURCE", os.path.join(os.path.dirname(REPO), "shared",
                                                               "upstream", "LLMRouter"))
CSVS = ("model_order.csv", "question_order.csv", "train.csv", "val.csv", "test.csv",
        "model_prices.csv")


def raw(rel):
  with open(os.path.join(SLICE, *rel.split("/")), encoding="utf-8") as f:
    return [json.loads(line) for line in f] if rel.endswith(".jsonl") else json.load(f)


def expected_cells():
  """{(question, model): label} by the layout's rule, from the raw answer files."""
  votes = {}
  for rel in upstream.ANSWERS:
    for item in raw(rel):
      for model, score in item["scores"].items():
        votes.setdefault((item["question"], model), []).append(score >= 0.5)
  return {k: int(2 * sum(v) >= len(v)) for k, v in votes.items()}


def test_the_slice_builds_by_the_layouts_rules(tmp_path):
  out = tmp_path / "llmrouter"
  summary = upstream.build_llmrouter(str(out), SLICE)
  cells = expected_cells()
  questions = sorted({q for q, _ in cells})
  assert len(questions) == 12 and len(cells) == 108  # 14 items, 2 questions repeated; 9 models
  assert summary.splitlines()[0] == f"{out}: 9 models x 12 queries, 108 of 108 cells known (100.0%)"
  order = pd.read_csv(out / "question_order.csv", keep_default_na=False)
  assert order["prompt"].tolist() == questions  # ids by prompt text
  tasks = {r["query"]: r["task_name"] for rel in upstream.QUERIES for r in raw(rel)}
  assert order["category"].tolist() == [tasks.get(q, "unknown") for q in questions]
  assert order["category"].tolist().count("unknown") == 1  # the query line left out
  rows = pd.concat([pd.read_csv(out / f"{s}.csv") for s in ("train", "val", "test")])
  got = {(questions[p], m): y for p, m, y in zip(rows.prompt_id, rows.model_name, rows.label)}
  assert got == cells
  prices = pd.read_csv(out / "model_prices.csv")
  assert prices["model_name"].tolist() == sorted({m for _, m in cells})
  assert pd.read_csv(out / "test.csv").prompt_id.nunique() == 1  # 12 // 10 = 1 test query


def test_download_command_reads_a_source_copy_and_refuses_a_wrong_one(tmp_path):
  ok = subprocess.run([sys.executable, "-m", "irt_jax", "download", "--dataset=llmrouter",
                       f"--source_dir={SLICE}", f"--out={tmp_path / 'a'}"], cwd=REPO,
                      capture_output=True, text=True, timeout=300)
  assert ok.returncode == 0, ok.stderr
  assert sorted(os.listdir(tmp_path / "a")) == sorted(CSVS)
  bad = subprocess.run([sys.executable, "-m", "irt_jax", "download", "--dataset=llmrouter",
                        f"--source_dir={tmp_path / 'nothing'}", f"--out={tmp_path / 'b'}"],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
  assert bad.returncode == 1 and len(bad.stderr.strip().splitlines()) == 1
  assert "--source_dir must be a copy of ulab-uiuc/LLMRouter at 4e7a7969" in bad.stderr
  assert not os.path.exists(tmp_path / "b")


@needs_shared_data("llmrouter")
@pytest.mark.skipif(not os.path.isfile(os.path.join(FULL, *upstream.ANSWERS[0].split("/"))),
                    reason=f"needs a full copy of ulab-uiuc/LLMRouter at {FULL} "
                           f"(or IRT_JAX_LLMROUTER_SOURCE)")
def test_a_full_upstream_copy_equals_the_shared_folder(tmp_path):
  shared = os.path.join(SHARED_DATA, "llmrouter")
  with_mpnet = os.path.isfile(os.path.join(MPNET_DIR, "model.safetensors"))
  upstream.build_llmrouter(str(tmp_path / "llmrouter"), FULL,
                           encoder_dir=MPNET_DIR if with_mpnet else None)
  for name in CSVS:
    assert filecmp.cmp(tmp_path / "llmrouter" / name, os.path.join(shared, name), shallow=False), name
  if with_mpnet:  # sentence-transformers' float16 vectors against the JAX encoder's
    ours = np.load(tmp_path / "llmrouter" / "question_embeddings.npy").astype(np.float32)
    theirs = np.load(os.path.join(shared, "question_embeddings.npy")).astype(np.float32)
    np.testing.assert_allclose(ours, theirs, atol=2e-3)
