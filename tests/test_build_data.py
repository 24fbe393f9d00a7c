"""irt-jax build-data (irt_jax.data.build): the join rules on hand-made rows, a folder built from several
real sources that loads, trains and routes, and every bad input ending in one line with no
folder left behind."""

import glob
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from irt_jax.data import assemble, build, io
from irt_jax.data.io import DataError
from irt_jax.data.sources.rows import Options
from tests.conftest import REPO
from tests.fake_encoder import HashEncoder

FIX = os.path.join(REPO, "tests", "fixtures")
INSPECT = os.path.join(FIX, "inspect")
POPULAR = [os.path.join(INSPECT, f) for f in (
    "2025-02-11T15-18-04-05-00_popularity_mj7khqpMM4GBCfVQozKgzB.eval", "log_formats.eval",
    "log_read_sample.eval", "log_streaming.eval")]
SOURCES = [os.path.join(FIX, "lm_eval"), os.path.join(FIX, "helm"), *POPULAR,
           os.path.join(INSPECT, "data_arc_qwen.json"), os.path.join(INSPECT, "data_arc_sonnet.json"),
           os.path.join(FIX, "tables", "routerarena")]


class StubEncoder(HashEncoder):
  """HashEncoder with what the embedding step records about an encoder."""
  fingerprint = "stub"
  max_length = 16


def rows(records, file="f.csv"):
  out = pd.DataFrame(records, columns=["model", "prompt", "score", "benchmark"])
  out["file"] = file
  return out


def test_join_normalises_names_merges_by_majority_with_ties_correct():
  a = rows([("org__m1", "q1", 1.0, "b1"), ("m2", "q1", 0.0, "b1"), ("m2", "q2", 1.0, "b2"),
            ("m2", "q1", 0.0, "b1")])
  b = rows([("org/m1", "q1", 0.0, "bX"), ("m2", "q1", 1.0, ""), ("org/m1", "q0", 1.0, "")])
  m = assemble.join([a, b])
  assert list(m.prompts) == ["q0", "q1", "q2"] and list(m.models) == ["m2", "org/m1"]
  assert list(m.categories) == ["unknown", "b1", "b2"]  # first seen; none given -> unknown
  cells = {(m.prompts[p], m.models[j]): (int(y), s) for p, j, y, s in
           zip(m.cell_prompt, m.cell_model, m.label, m.score)}
  assert cells == {("q0", "org/m1"): (1, 1.0),
                   ("q1", "m2"): (0, pytest.approx(1 / 3)),   # 1 of 3: wrong
                   ("q1", "org/m1"): (1, 0.5),                 # 1 of 2: a tie counts correct
                   ("q2", "m2"): (1, 1.0)}                     # (q2, org/m1) stays unknown


def test_fractional_scores_need_a_threshold():
  frame = rows([("a", "q", 0.25, ""), ("b", "q", 0.75, "")], file="scores.csv")
  with pytest.raises(DataError, match=r"scores\.csv: scores are not 0/1 \(e\.g\. 0\.25\).*--threshold"):
    assemble.join([frame])
  assert assemble.join([frame], threshold=0.5).label.tolist() == [0, 1]


def test_split_is_the_layouts_seeded_permutation():
  frame = rows([(m, f"q{i:02d}", 1.0, "") for i in range(25) for m in ("a", "b")])
  matrix = assemble.join([frame])
  split = assemble.split_of_queries(matrix, "mine")
  order = np.random.default_rng([20261122, sum(map(ord, "mine"))]).permutation(25)
  assert set(np.flatnonzero(split == 2)) == set(order[:2])  # 25 // 10 = 2 test queries
  assert set(np.flatnonzero(split == 1)) == set(order[2:4])
  assert (split == 0).sum() == 21


def test_a_given_split_column_is_used():
  frame = rows([(m, f"q{i}", 1.0, "") for i in range(3) for m in ("a", "b")])
  frame["split"] = [s for s in ("train", "val", "test") for _ in range(2)]
  matrix = assemble.join([frame])
  assert assemble.split_of_queries(matrix, "x").tolist() == [0, 1, 2]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
  out = str(tmp_path_factory.mktemp("build") / "mine")
  text = build.build(SOURCES, out, Options(), encoder_dir="stub", encoder=StubEncoder(8))
  return out, text


def test_several_sources_join_into_one_folder_that_loads(built):
  out, text = built
  data = io.load_dataset(out)
  # models: 3 lm-eval, 2 HELM, 4 + 2 inspect, 2 RouterArena
  assert data.n_models == 13 and data.embeddings.shape == (data.n_queries, 8)
  # queries: 50 + 10 + 4 (lm-eval), 10 + 10 + 5 (HELM), 10 popularity, 5 arc, 20 RouterArena
  assert data.n_queries == 124
  assert text.splitlines()[0].startswith(f"{out}: 13 models x 124 queries")
  assert "  asdiv: 50 queries, 50 cells, 92.0%" in text
  labels = np.full((data.n_queries, data.n_models), -1)
  for part in data.splits.values():
    labels[part.queries] = np.maximum(labels[part.queries], part.labels)
  item = next(i for i, p in enumerate(data.prompts) if "Positive posts about myself" in p)
  by_model = dict(zip(data.model_names, labels[item]))
  # popularity item 1: gpt-4o-mini C, llama3.1 I, gemma3 C, the 405B model I then C (a tie)
  assert {k: v for k, v in by_model.items() if v >= 0} == {
      "openai/gpt-4o-mini": 1, "ollama/llama3.1": 0, "ollama/gemma3": 1,
      "azureai/Meta-Llama-3-1-405B-Instruct-jqf": 1}
  assert "EleutherAI/pythia-2.8b" in data.model_names  # EleutherAI__pythia-2.8b normalised
  np.testing.assert_allclose(data.embeddings[item], StubEncoder(8).encode([data.prompts[item]])[0],
                             rtol=1e-3, atol=1e-3)  # stored as float16


def test_the_joined_matrix_trains_and_routes(built, tmp_path):
  from configs import logreg
  from irt_jax import predictors
  from irt_jax.routing.router import Router
  from irt_jax.training import runs as training
  config = logreg.get_config()
  config.data.dir = built[0]
  training.run(config, str(tmp_path / "run"))
  run = predictors.load(str(tmp_path / "run"))
  assert len(run.predictor.model_names) == 13
  routes = Router.from_predictor(run.predictor, StubEncoder(8)).route(["What is 7 * 6?"])
  assert routes[0].model in run.predictor.model_names


@pytest.mark.slow  # the recommended recipe's two members and their ensemble: ~1 min on 2 busy cores
def test_the_joined_matrix_trains_with_the_recommended_recipe(built, tmp_path):
  from configs import recommended
  from irt_jax import predictors
  from irt_jax.routing.router import Router
  from irt_jax.training import runs as training
  config = recommended.get_config()
  config.data.dir = built[0]
  config.members.irtnet.model.update(n_experts=2, top_k=2, hidden_dim=16, output_dim=8,
                                     ability_dim=4)
  config.members.irtnet.train.num_epochs = 2
  training.run(config, str(tmp_path / "rec"))
  run = predictors.load(str(tmp_path / "rec"))
  assert run.kind.name == "ensemble"
  routes = Router.from_predictor(run.predictor, StubEncoder(8)).route(["Who wrote Hamlet?"])
  assert routes[0].model in run.predictor.model_names


# ---------------------------------------------------------------- bad input, through the CLI
def run_build(args, cwd):
  return subprocess.run([sys.executable, "-m", "irt_jax", "build-data", *args], cwd=REPO,
                        capture_output=True, text=True, timeout=120)


def bad_inputs(tmp_path):
  (tmp_path / "notes.bin").write_bytes(b"\x00\x01\x02not a log")
  frac = tmp_path / "frac.csv"
  frac.write_text("model,prompt,score\na,q1,0.5\nb,q1,1\n")
  few = tmp_path / "few.csv"
  few.write_text("model,prompt,correct\n" + "".join(f"{m},q{i},1\n" for i in range(4) for m in "ab"))
  asdiv = os.path.join(FIX, "lm_eval", "llama3_asdiv")
  unscored = os.path.join(INSPECT, "2025-02-11T15-17-00-05-00_popularity_dPiJifoWeEQBrfWsAopzWr.eval")
  return {
      "unknown format": ([str(tmp_path / "notes.bin")], r"notes\.bin: unknown format"),
      "log without scores": ([unscored], r"popularity_dPiJ.*\.eval: the log has no scores"),
      "missing metric": (["--metric=f1", asdiv], r"samples_asdiv.*no 'f1' score.*--metric"),
      "fractional": ([str(frac)], r"frac\.csv: scores are not 0/1.*--threshold"),
      "one model": ([asdiv], r"scores of 1 model\(s\) only.*two or more"),
      "too few queries": ([str(few)], r"only 4 distinct queries.*at least 10"),
  }


def test_every_bad_input_ends_in_one_line_and_leaves_no_folder(tmp_path):
  import re
  for name, (args, pattern) in bad_inputs(tmp_path).items():
    out = tmp_path / "out" / name.replace(" ", "_")
    out.parent.mkdir(exist_ok=True)
    proc = run_build([f"--out={out}", "--encoder_dir=", *args], REPO)
    assert proc.returncode == 1, (name, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("build-data: "), (name, proc.stderr)
    assert re.search(pattern, lines[0]), (name, lines[0])
    assert not os.listdir(out.parent), (name, os.listdir(out.parent))


def test_a_failed_encoding_leaves_no_partial_folder(tmp_path):
  class Broken(StubEncoder):
    def encode(self, texts, batch_size=64, progress=False):
      raise RuntimeError("encoder died")
  with pytest.raises(RuntimeError, match="encoder died"):
    build.build(SOURCES[:2], str(tmp_path / "x"), encoder_dir="stub", encoder=Broken(8))
  assert os.listdir(tmp_path) == []


def test_an_existing_folder_is_kept_unless_overwrite(tmp_path):
  out = tmp_path / "mine"
  out.mkdir()
  (out / "keep.txt").write_text("mine")
  with pytest.raises(DataError, match="already exists; pass --overwrite"):
    build.build(SOURCES[:2], str(out), encoder_dir=None)
  build.build(SOURCES[:2], str(out), encoder_dir=None, overwrite=True)
  assert sorted(os.listdir(out)) == sorted(["model_order.csv", "question_order.csv",
                                             "train.csv", "val.csv", "test.csv"])
  assert not glob.glob(str(tmp_path / ".*"))


def test_csv_files_are_written_as_pandas_writes_them(tmp_path):
  from irt_jax.data import layout
  texts = ["plain", "a, comma", 'a "quote"', "line\nbreak", "cr\rreturn", " padded ", "ünï"]
  frame = rows([(m, t, s, b) for t in texts for m, s, b in
                (("m,1", 1.0, "b1"), ("m2", 0.5, 'b"2'))])
  matrix = assemble.join([frame], threshold=0.5)
  split = np.zeros(len(matrix.prompts), np.int8)
  layout.write_csvs(matrix, split, str(tmp_path))
  cells = pd.DataFrame({"prompt_id": matrix.cell_prompt, "model_id": matrix.cell_model,
                        "category": matrix.categories[matrix.cell_prompt], "label": matrix.label,
                        "score": matrix.score, "model_name": matrix.models[matrix.cell_model]})
  assert (tmp_path / "train.csv").read_bytes() == cells.to_csv(index=False).encode()
  order = pd.DataFrame({"prompt_id": range(len(texts)), "prompt": matrix.prompts,
                        "category": matrix.categories})
  assert (tmp_path / "question_order.csv").read_bytes() == order.to_csv(index=False).encode()
  assert (tmp_path / "val.csv").read_text() == "prompt_id,model_id,category,label,score,model_name\n"


def test_model_flag_names_every_source(tmp_path):
  from irt_jax.data.sources import detect
  path = os.path.join(FIX, "lm_eval", "pythia_winogrande")
  frames = detect.read_inputs([path], Options(model="EleutherAI/pythia-2.8b-deduped"))
  assert set(frames[0]["model"]) == {"EleutherAI/pythia-2.8b-deduped"} and len(frames[0]) == 4


def test_a_cost_column_becomes_costs_csv_that_routing_reads(tmp_path):
  import json as json_lib
  from irt_jax.routing import costs as costs_lib
  folder = os.path.join(FIX, "tables", "routerarena")
  out = tmp_path / "arena"
  build.build([folder], str(out), encoder_dir=None)
  expected = {}
  for name in ("claude-3-haiku-20240307", "gemini-2.0-flash-001"):
    with open(os.path.join(folder, f"{name}.jsonl"), encoding="utf-8") as f:
      for line in f:
        r = json_lib.loads(line)
        expected[(r["question"], name)] = r["evaluation_result"]["inference_cost"]
  order = pd.read_csv(out / "question_order.csv", keep_default_na=False)
  models = pd.read_csv(out / "model_order.csv")
  costs = pd.read_csv(out / "costs.csv")
  got = {(order.prompt[p], models.model_name[m]): c for p, m, c in zip(costs.prompt_id,
                                                                        costs.model_id, costs.cost)}
  assert got.keys() == expected.keys() and len(got) == 40
  assert all(got[k] == pytest.approx(v) for k, v in expected.items())
  table = costs_lib.read_costs(str(out / "costs.csv"), [str(i) for i in order.prompt_id],
                               [str(i) for i in models.model_id], list(models.model_name))
  assert table.shape == (20, 2) and not np.isnan(table).any()


def test_the_encoder_folder_flag_loads_a_static_encoder(tmp_path):
  from irt_jax.encoder import load_encoder
  from tests.test_static_encoder import hand_folder
  folder = hand_folder(tmp_path / "static")
  out = tmp_path / "mine"
  build.build([os.path.join(FIX, "lm_eval")], str(out), encoder_dir=str(folder))
  data = io.load_dataset(str(out))
  expected = load_encoder(str(folder)).encode(list(data.prompts[:3]))
  assert data.embeddings.shape[0] == data.n_queries == 64
  np.testing.assert_allclose(data.embeddings[:3], expected, atol=1e-3)  # stored as float16
