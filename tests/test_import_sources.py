"""Each importer on its real fixture (tests/fixtures/*, see their SOURCE notes): models,
queries and correct cells, counted from the raw files here (plain json, not the readers)
and written out as numbers read off the files by hand."""

import json
import os
import shutil
import zipfile

import numpy as np
import pytest

from irt_jax.data.io import DataError
from irt_jax.data.sources import detect, helm, inspect_logs, lm_eval, table
from irt_jax.data.sources.rows import Options
from tests.conftest import REPO

FIX = os.path.join(REPO, "tests", "fixtures")
ASDIV = os.path.join(FIX, "lm_eval", "llama3_asdiv")
INSPECT = os.path.join(FIX, "inspect")
SCORED = os.path.join(INSPECT, "2025-02-11T15-18-04-05-00_popularity_mj7khqpMM4GBCfVQozKgzB.eval")
UNSCORED = os.path.join(INSPECT, "2025-02-11T15-17-00-05-00_popularity_dPiJifoWeEQBrfWsAopzWr.eval")


def raw_lines(path):
  with open(path, encoding="utf-8") as f:
    return [json.loads(line) for line in f if line.strip()]


def only_file(folder, prefix):
  return os.path.join(folder, next(f for f in os.listdir(folder) if f.startswith(prefix)))


# ---------------------------------------------------------------- lm-evaluation-harness
def test_lm_eval_v04_asdiv_has_50_items_46_correct_under_the_primary_metric():
  samples = only_file(ASDIV, "samples_")
  raw = raw_lines(samples)
  assert (len(raw), sum(r["acc"] for r in raw)) == (50, 46)  # by hand: 4 lines have acc 0.0
  rows = lm_eval.read_samples(samples, Options())
  assert len(rows) == 50 and rows["score"].sum() == 46
  assert set(rows["model"]) == {"meta-llama/Meta-Llama-3-8B-Instruct"}  # results' model_name
  assert set(rows["benchmark"]) == {"asdiv"}
  # the document's body and question, not the 8-shot prompt
  assert rows["prompt"].iloc[0] == ("Seven red apples and two green apples are in the basket.\n"
                                    "How many apples are in the basket?")
  assert rows["prompt"].nunique() == len({(r["doc"]["body"], r["doc"]["question"]) for r in raw})


def test_lm_eval_v047_rows_one_per_doc_and_filter(tmp_path):
  folder = os.path.join(FIX, "lm_eval", "eee_math")
  samples = only_file(folder, "samples_")
  raw = raw_lines(samples)
  rows = lm_eval.read_samples(samples, Options())
  assert len(rows) == len(raw) == 10 and rows["score"].sum() == 0  # every exact_match is 0.0
  assert set(rows["model"]) == {raw_json(only_file(folder, "results_"))["model_name"]}
  assert rows["prompt"].iloc[0] == raw[0]["doc"]["problem"]
  # a second filter on every doc, with other scores: still one row per doc
  copy = tmp_path / "run"
  shutil.copytree(folder, copy)
  other = [dict(r, filter="strict-match", exact_match=1.0) for r in raw]
  with open(only_file(copy, "samples_"), "a", encoding="utf-8") as f:
    f.writelines(json.dumps(r) + "\n" for r in other)
  both = only_file(copy, "samples_")
  assert lm_eval.read_samples(both, Options())["score"].sum() == 0  # 'none' by default
  strict = lm_eval.read_samples(both, Options(lm_eval_filter="strict-match"))
  assert len(strict) == 10 and strict["score"].sum() == 10


def raw_json(path):
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def test_lm_eval_2023_file_names_model_and_task():
  path = os.path.join(FIX, "lm_eval", "pythia_winogrande",
                      "pretrained=EleutherAI__pythia-2.8b_winogrande.jsonl")
  raw = raw_lines(path)
  assert [r["acc"] for r in raw] == [0.0, 0.0, 0.0, 1.0]
  rows = lm_eval.read_samples(path, Options())
  assert list(rows["score"]) == [0, 0, 0, 1]
  assert set(rows["model"]) == {"EleutherAI__pythia-2.8b"} and set(rows["benchmark"]) == {"winogrande"}
  assert rows["prompt"].iloc[3] == raw[3]["doc"]["sentence"]


def test_lm_eval_missing_metric_names_the_file_and_the_metrics_there():
  with pytest.raises(DataError, match=r"samples_asdiv.*no 'exact_match' score.*acc.*--metric"):
    lm_eval.read_samples(only_file(ASDIV, "samples_"), Options(metric="exact_match"))


# ---------------------------------------------------------------- inspect_ai
def test_inspect_eval_log_ten_items_eight_correct():
  with zipfile.ZipFile(SCORED) as z:
    values = [json.loads(z.read(n))["scores"]["match"]["value"]
              for n in z.namelist() if n.startswith("samples/")]
  assert sorted(values).count("C") == 8 and len(values) == 10  # items 3 and 7 are "I"
  rows = inspect_logs.read_eval(SCORED, Options())
  assert len(rows) == 10 and rows["score"].sum() == 8
  assert set(rows["model"]) == {"openai/gpt-4o-mini"} and set(rows["benchmark"]) == {"popularity"}


def test_inspect_unscored_log_is_refused():
  with pytest.raises(DataError, match=r"popularity_dPiJ.*\.eval: the log has no scores"):
    inspect_logs.read_eval(UNSCORED, Options())


def test_inspect_eval_and_json_of_one_run_give_the_same_rows():
  a = inspect_logs.read_eval(os.path.join(INSPECT, "log_formats.eval"), Options())
  b = inspect_logs.read_json(os.path.join(INSPECT, "log_formats.json"),
                             raw_json(os.path.join(INSPECT, "log_formats.json")), Options())
  cols = ["model", "prompt", "score", "benchmark"]
  assert a[cols].to_dict("records") == b[cols].to_dict("records")
  assert a["score"].tolist() == [0.0]  # ollama/llama3.1 answered item 1 wrongly ("I")


def test_inspect_epochs_are_rows_to_be_merged():
  rows = inspect_logs.read_eval(os.path.join(INSPECT, "log_streaming.eval"), Options())
  # 2 items x 2 epochs: item 1 I then C, item 2 C and C
  assert len(rows) == 4 and rows["prompt"].nunique() == 2 and rows["score"].sum() == 3


def test_inspect_json_logs_of_every_eval_ever_share_three_items():
  qwen = inspect_logs.read_json(os.path.join(INSPECT, "data_arc_qwen.json"),
                                raw_json(os.path.join(INSPECT, "data_arc_qwen.json")), Options())
  sonnet = inspect_logs.read_json(os.path.join(INSPECT, "data_arc_sonnet.json"),
                                  raw_json(os.path.join(INSPECT, "data_arc_sonnet.json")), Options())
  assert (len(qwen), qwen["score"].sum(), len(sonnet), sonnet["score"].sum()) == (3, 1, 5, 5)
  assert len(set(qwen["prompt"]) & set(sonnet["prompt"])) == 3
  assert set(qwen["benchmark"]) == {"arc_easy"}
  with pytest.raises(DataError, match="no scorer 'nope'.*choice"):
    inspect_logs.read_json(os.path.join(INSPECT, "data_arc_qwen.json"),
                           raw_json(os.path.join(INSPECT, "data_arc_qwen.json")),
                           Options(metric="nope"))


# ---------------------------------------------------------------- HELM
HELM = os.path.join(FIX, "helm")


def helm_exact_match(folder):
  return [s["sum"] / s["count"] for e in raw_json(os.path.join(folder, "per_instance_stats.json"))
          for s in e["stats"] if s["name"]["name"] == "exact_match"]


@pytest.mark.parametrize("name,model,bench,n,correct", [
    ("commonsense-dataset=hellaswag,method=multiple_choice_joint,model=eleutherai_pythia-1b-v0",
     "eleutherai/pythia-1b-v0", "commonsense", 10, 3),
    ("mmlu-subject=philosophy,method=multiple_choice_joint,model=openai_gpt2",
     "openai/gpt2", "mmlu", 10, 1),
    ("narrative_qa-model=openai_gpt2", "openai/gpt2", "narrative_qa", 5, 0)])
def test_helm_run_folder(name, model, bench, n, correct):
  folder = os.path.join(HELM, name)
  assert (len(helm_exact_match(folder)), sum(helm_exact_match(folder))) == (n, correct)
  rows = helm.read_run(folder, Options())
  assert (len(rows), rows["score"].sum()) == (n, correct)
  assert set(rows["model"]) == {model} and set(rows["benchmark"]) == {bench}
  state = raw_json(os.path.join(folder, "scenario_state.json"))
  assert set(rows["prompt"]) == {r["instance"]["input"]["text"] for r in state["request_states"]}


def test_helm_perturbed_rows_are_skipped(tmp_path):
  src = os.path.join(HELM, "mmlu-subject=philosophy,method=multiple_choice_joint,model=openai_gpt2")
  folder = tmp_path / "run"
  shutil.copytree(src, folder)
  state = raw_json(folder / "scenario_state.json")
  extra = json.loads(json.dumps(state["request_states"][0]))
  extra["instance"]["perturbation"] = {"name": "typos", "prob": 0.1}
  extra["instance"]["input"]["text"] = "Wht does teh notion of meaning in life refer to?"
  state["request_states"].append(extra)
  (folder / "scenario_state.json").write_text(json.dumps(state))
  stats = raw_json(folder / "per_instance_stats.json")
  planted = json.loads(json.dumps(stats[0]))
  planted["perturbation"] = {"name": "typos"}
  for s in planted["stats"]:
    s["sum"], s["name"]["perturbation"] = s["count"], {"name": "typos"}
  stats.append(planted)
  (folder / "per_instance_stats.json").write_text(json.dumps(stats))
  rows = helm.read_run(str(folder), Options())
  assert (len(rows), rows["score"].sum()) == (10, 1)
  assert extra["instance"]["input"]["text"] not in set(rows["prompt"])


def test_helm_fractional_metric_is_read_as_it_is():
  rows = helm.read_run(os.path.join(HELM, "narrative_qa-model=openai_gpt2"),
                       Options(metric="f1_score"))
  assert np.round(rows["score"].to_numpy(), 3).tolist() == [0.0, 0.333, 0.0, 0.0, 0.364]


# ---------------------------------------------------------------- tables
def test_llmrouter_wide_json_scores_per_model():
  path = os.path.join(FIX, "tables", "llmrouter", "test.json")
  raw = raw_json(path)
  values = [v for item in raw for v in item["scores"].values()]
  assert (len(raw), len(raw[0]["scores"]), sum(v >= 0.5 for v in values)) == (30, 9, 62)
  rows = table.read_table(path, "json", Options())
  assert len(rows) == 270 and rows["model"].nunique() == 9
  assert set(rows["model"]) == set(raw[0]["scores"])  # 'scores.' prefix dropped
  assert (rows["score"] >= 0.5).sum() == 62 and ((rows["score"] % 1) != 0).sum() == 86
  first = rows[rows["prompt"] == raw[0]["question"]].set_index("model")["score"].to_dict()
  assert first == raw[0]["scores"]


def test_routerarena_long_jsonl_with_a_nested_score():
  folder = os.path.join(FIX, "tables", "routerarena")
  for name, correct in (("claude-3-haiku-20240307", 13), ("gemini-2.0-flash-001", 14)):
    path = os.path.join(folder, f"{name}.jsonl")
    raw = raw_lines(path)
    assert sum(r["evaluation_result"]["score"] for r in raw) == correct and len(raw) == 20
    rows = table.read_table(path, "jsonl", Options())
    assert set(rows["model"]) == {name} and rows["score"].sum() == correct
    assert list(rows["prompt"]) == [r["question"] for r in raw]


def test_long_csv_and_parquet_tables_read_alike(tmp_path):
  import pandas as pd
  frame = pd.DataFrame({"model": ["a", "b", "a"], "prompt": ["x, y", "x, y", "line\nbreak"],
                        "correct": [True, False, True], "task": ["t1", "t1", "t2"]})
  frame.to_csv(tmp_path / "t.csv", index=False)
  frame.to_parquet(tmp_path / "t.parquet")
  cols = ["model", "prompt", "score", "benchmark"]
  a = table.read_table(str(tmp_path / "t.csv"), "csv", Options())[cols].astype(object)
  b = table.read_table(str(tmp_path / "t.parquet"), "parquet", Options())[cols].astype(object)
  assert a.to_dict("records") == b.to_dict("records")
  assert a["score"].tolist() == [1.0, 0.0, 1.0] and a["benchmark"].tolist() == ["t1", "t1", "t2"]


# ---------------------------------------------------------------- sniffing
def test_formats_are_told_apart_by_content_not_extension(tmp_path):
  shutil.copy(SCORED, tmp_path / "log.bin")
  shutil.copy(only_file(ASDIV, "samples_"), tmp_path / "samples.txt.json")
  shutil.copy(os.path.join(FIX, "tables", "llmrouter", "test.json"), tmp_path / "scores.dat")
  (tmp_path / "notes.csv").write_bytes(b"\x00\x01binary\x02")
  kinds = {os.path.basename(p): k for k, p in detect.collect([str(tmp_path)])}
  assert kinds == {"log.bin": "inspect_eval", "samples.txt.json": "lm_samples",
                   "scores.dat": "json", "notes.csv": "unknown"}
  with pytest.raises(DataError, match=r"notes\.csv: unknown format"):
    detect.read_inputs([str(tmp_path)], Options())
