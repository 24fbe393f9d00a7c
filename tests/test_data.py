"""Reading both CSV layouts, sparse masks, majority votes, and clear errors on bad input."""

import os
import pickle
import shutil

import numpy as np
import pandas as pd
import pytest

from irt_jax.training import batches
from irt_jax.data import io as data_lib
from irt_jax.data import synthetic
from tests.conftest import SHARED_DATA, needs_shared_data


def _copy(src, tmp_path):
  dst = tmp_path / "data"
  shutil.copytree(src, dst)
  return str(dst)


def test_compact_layout_round_trip(synthetic_dir):
  data = data_lib.load_dataset(synthetic_dir)
  truth = synthetic.load_truth(synthetic_dir)
  assert data.n_models == 8 and data.n_queries == 200 and data.embed_dim == 16
  # Every test-split query of the generator is in the test split, with its labels.
  want = np.flatnonzero(truth["split"] == 2)
  np.testing.assert_array_equal(np.sort(data.split("test").queries), want)
  # Sparse: about 20% unknown, stored as -1 and masked.
  train = data.split("train")
  assert 0.1 < 1 - train.mask.mean() < 0.3
  assert set(np.unique(train.labels)) == {-1, 0, 1}
  assert data.benchmark_names == ("bench0", "bench1", "bench2")
  np.testing.assert_array_equal(data.benchmark, truth["benchmark"])


def test_full_layout_with_string_ids_prompts_and_duplicates(tmp_path):
  """The Hugging Face form: prompt text in every row, string ids, repeated answers."""
  d = tmp_path / "full"
  d.mkdir()
  pd.DataFrame({"model_id": ["gpt-x", "llama-y", "qwen-z"]}).to_csv(d / "model_order.csv", index=False)
  prompts = {"q-a": "What is 2+2?", "q-b": "Capital of France,\nplease?", "q-c": "Sky colour?"}
  pd.DataFrame({"prompt_id": list(prompts)}).to_csv(d / "question_order.csv", index=False)
  rows = [  # model_id, prompt_id, label, category
      ("gpt-x", "q-a", 1, "gsm8k_main"), ("gpt-x", "q-a", 0, "gsm8k_main"),  # tie -> correct
      ("llama-y", "q-a", 0, "gsm8k_main"), ("llama-y", "q-a", 0, "gsm8k_main"),
      ("llama-y", "q-a", 1, "gsm8k_main"),                                     # 1 of 3 -> wrong
      ("qwen-z", "q-a", 1, "gsm8k_main"),
      ("gpt-x", "q-b", 1, "mmlu_geography"),                                   # sparse row
  ]
  frame = pd.DataFrame(rows, columns=["model_id", "prompt_id", "label", "category"])
  frame["prompt"] = frame["prompt_id"].map(prompts)
  frame.to_csv(d / "train.csv", index=False)
  val = pd.DataFrame([("qwen-z", "q-c", 0, "mmlu_astronomy")],
                     columns=["model_id", "prompt_id", "label", "category"])
  val["prompt"] = "Sky colour?"
  val.to_csv(d / "val.csv", index=False)
  np.save(d / "question_embeddings.npy", np.eye(3, 4, dtype=np.float16))

  data = data_lib.load_dataset(str(d), benchmarks="irtnet")
  assert data.model_names == ("gpt-x", "llama-y", "qwen-z")
  assert data.prompts[1] == "Capital of France,\nplease?"
  train = data.split("train")
  row_a = list(train.queries).index(0)
  np.testing.assert_array_equal(train.labels[row_a], [1, 0, 1])
  row_b = list(train.queries).index(1)
  np.testing.assert_array_equal(train.labels[row_b], [1, -1, -1])
  assert [data.benchmark_names[b] for b in data.benchmark] == ["gsm8k", "mmlu", "mmlu"]
  assert data.embeddings.dtype == np.float32
  assert "test" not in data.splits  # optional split absent


@needs_shared_data("routerdc")
def test_shared_routerdc_loads_aligned():
  data = data_lib.load_dataset(os.path.join(SHARED_DATA, "routerdc"))
  assert (data.n_models, data.n_queries, data.embed_dim) == (7, 20565, 768)
  np.testing.assert_allclose(np.linalg.norm(data.embeddings, axis=1), 1.0, atol=2e-3)
  test = data.split("test")
  assert test.mask.all()  # dense matrix: every model answered every test query
  assert len(test.queries) == 2056


def test_blocks_pad_the_last_batch_with_masked_rows(synthetic_dir):
  data = data_lib.load_dataset(synthetic_dir)
  split = data.split("val")
  blocks = list(batches.iterate(split, data.embeddings, 8))
  n = len(split.queries)
  assert len(blocks) == -(-n // 8)
  seen = np.concatenate([b["query_index"][b["mask"].any(1)] for b in blocks])
  assert sorted(seen) == sorted(split.queries[split.mask.any(1)])
  assert int(sum(b["mask"].sum() for b in blocks)) == split.n_cells
  last = blocks[-1]
  assert not last["mask"][n % 8 or 8:].any()
  # Processes split each block without overlap.
  p0 = list(batches.iterate(split, data.embeddings, 8, process_index=0, process_count=2))
  p1 = list(batches.iterate(split, data.embeddings, 8, process_index=1, process_count=2))
  np.testing.assert_array_equal(np.concatenate([p0[0]["query_index"], p1[0]["query_index"]]),
                                blocks[0]["query_index"])


# --- Bad input ---------------------------------------------------------------

def _rewrite_csv(path, fn):
  frame = pd.read_csv(path, dtype=str, keep_default_na=False)
  fn(frame).to_csv(path, index=False)


@pytest.mark.parametrize("case, match", [
    ("missing_column", r"train\.csv: missing column\(s\) \['label'\]"),
    ("label_out_of_range", r"train\.csv: label must be 0 or 1; row \d+ has '2'"),
    ("label_nan", r"train\.csv: label must be 0 or 1"),
    ("unknown_model", r"test\.csv: 1 row\(s\) name a model_id that is not in .*model_order\.csv"),
    ("wrong_model_name", r"test\.csv: row \d+ gives model_id '0' the name 'impostor'"),
    ("unknown_query", r"val\.csv: .* prompt_id that is not in .*question_order\.csv"),
    ("empty_split", r"val\.csv: has a header but no rows"),
    ("missing_split", r"val\.csv: file not found"),
    ("embeddings_rows", r"question_embeddings\.npy: has 199 rows but .*question_order\.csv lists 200"),
    ("embeddings_nan", r"question_embeddings\.npy: 1 row\(s\) hold NaN"),
    ("embeddings_1d", r"question_embeddings\.npy: expected a 2-D float array"),
    ("embeddings_pickle", r"question_embeddings\.npy: not a plain numeric \.npy array"),
    ("embeddings_missing", r"question_embeddings\.npy: file not found"),
    ("cell_in_two_splits", r"cell\(s\) appear in both train\.csv and val\.csv"),
    ("duplicate_model", r"model_order\.csv: column 'model_id' repeats"),
    ("unmatched_benchmark", r"categories .* match none of the benchmark names"),
    # Every row one field longer than the header: pandas would read the first
    # column as an index and shift every other column by one.
    ("every_row_one_field_longer", r"train\.csv: cannot be parsed .*line 2 has \d+ field\(s\) but "
                                   r"the header has \d+"),
    ("short_row", r"val\.csv: cannot be parsed .*line 4 has 2 field\(s\)"),
    ("repeated_header", r"test\.csv: header repeats column\(s\) \['label'\]"),
    ("not_utf8", r"model_order\.csv: cannot be parsed as UTF-8 CSV"),
])
def test_bad_input_names_file_and_problem(synthetic_dir, tmp_path, case, match):
  d = _copy(synthetic_dir, tmp_path)
  p = lambda name: os.path.join(d, name)
  emb = np.load(p("question_embeddings.npy"))
  benchmarks = ""
  if case == "missing_column":
    _rewrite_csv(p("train.csv"), lambda f: f.drop(columns=["label"]))
  elif case == "label_out_of_range":
    _rewrite_csv(p("train.csv"), lambda f: f.assign(label=np.where(np.arange(len(f)) == 3, "2", f["label"])))
  elif case == "label_nan":
    _rewrite_csv(p("train.csv"), lambda f: f.assign(label=np.where(np.arange(len(f)) == 3, "", f["label"])))
  elif case == "unknown_model":
    _rewrite_csv(p("test.csv"), lambda f: f.assign(model_id=np.where(np.arange(len(f)) == 0, "99", f["model_id"])))
  elif case == "wrong_model_name":
    _rewrite_csv(p("test.csv"), lambda f: f.assign(model_name=np.where(f["model_id"] == "0", "impostor", f["model_name"])))
  elif case == "unknown_query":
    _rewrite_csv(p("val.csv"), lambda f: f.assign(prompt_id=np.where(np.arange(len(f)) == 0, "nope", f["prompt_id"])))
  elif case == "empty_split":
    _rewrite_csv(p("val.csv"), lambda f: f.iloc[:0])
  elif case == "missing_split":
    os.remove(p("val.csv"))
  elif case == "embeddings_rows":
    np.save(p("question_embeddings.npy"), emb[:-1])
  elif case == "embeddings_nan":
    emb[5, 2] = np.nan
    np.save(p("question_embeddings.npy"), emb)
  elif case == "embeddings_1d":
    np.save(p("question_embeddings.npy"), emb.ravel())
  elif case == "embeddings_pickle":
    np.save(p("question_embeddings.npy"), np.array([{"x": 1}] * 200, dtype=object),
            allow_pickle=True)
  elif case == "embeddings_missing":
    os.remove(p("question_embeddings.npy"))
  elif case == "cell_in_two_splits":
    train = pd.read_csv(p("train.csv"))
    pd.concat([pd.read_csv(p("val.csv")), train.iloc[:1]]).to_csv(p("val.csv"), index=False)
  elif case == "duplicate_model":
    _rewrite_csv(p("model_order.csv"), lambda f: f.assign(model_id=["0"] + list(f["model_id"][1:-1]) + ["0"]))
  elif case == "unmatched_benchmark":
    benchmarks = "bench0,bench1"
  elif case == "every_row_one_field_longer":
    lines = open(p("train.csv")).read().splitlines()
    open(p("train.csv"), "w").write("\n".join([lines[0]] + [l + ",x" for l in lines[1:]]) + "\n")
  elif case == "short_row":
    lines = open(p("val.csv")).read().splitlines()
    lines[3] = "a,b"
    open(p("val.csv"), "w").write("\n".join(lines) + "\n")
  elif case == "repeated_header":
    lines = open(p("test.csv")).read().splitlines()
    lines = [lines[0] + ",label"] + [l + ",1" for l in lines[1:]]
    open(p("test.csv"), "w").write("\n".join(lines) + "\n")
  elif case == "not_utf8":
    with open(p("model_order.csv"), "ab") as f:
      f.write(b"\xff\xfe,\xff\n")
  with pytest.raises(data_lib.DataError, match=match):
    data_lib.load_dataset(d, benchmarks=benchmarks)


class _Unpickled(BaseException):
  """Raised by the patched unpickler; a BaseException so no `except Exception`
  in the loader can swallow it."""


def _load_watching_unpickling(d, monkeypatch):
  """Loads `d` with every pickle entry point numpy can reach replaced by a trap
  (np.load calls `pickle.load` on the open file, not `pickle.loads`)."""
  def trap(*args, **kwargs):
    raise _Unpickled("unpickled a user file")
  for name in ("load", "loads"):
    monkeypatch.setattr(pickle, name, trap)
  monkeypatch.setattr(pickle, "Unpickler", trap)
  return data_lib.load_dataset(d)


def _pickled_embeddings(synthetic_dir, tmp_path):
  d = _copy(synthetic_dir, tmp_path)
  np.save(os.path.join(d, "question_embeddings.npy"), np.array([object()] * 200, dtype=object),
          allow_pickle=True)
  return d


def test_pickled_embeddings_are_never_unpickled(synthetic_dir, tmp_path, monkeypatch):
  d = _pickled_embeddings(synthetic_dir, tmp_path)
  with pytest.raises(data_lib.DataError, match="question_embeddings.npy: not a plain numeric"):
    _load_watching_unpickling(d, monkeypatch)


def test_the_unpickling_trap_catches_a_loader_that_allows_pickles(synthetic_dir, tmp_path,
                                                                  monkeypatch):
  """The test above can fail: with allow_pickle=True in the loader, the trap fires."""
  d = _pickled_embeddings(synthetic_dir, tmp_path)
  real_load = np.load  # the loader as it would be written carelessly: np.load(path, allow_pickle=True)
  monkeypatch.setattr(np, "load", lambda path, *a, **k: real_load(path, allow_pickle=True))
  with pytest.raises(_Unpickled):
    _load_watching_unpickling(d, monkeypatch)
