"""The binary cached copy of a dataset: same data back, never stale, never pickled."""

import os

import numpy as np
import pandas as pd
import pytest

from irt_jax.data import io as data_lib
from irt_jax.data import cache as data_cache


def _folder(d):
  d.mkdir()
  pd.DataFrame({"model_id": ["m-a", "m-b"], "model_name": ["Alpha", "Beta"]}).to_csv(
      d / "model_order.csv", index=False)
  pd.DataFrame({"prompt_id": ["q1", "q2", "q3"]}).to_csv(d / "question_order.csv", index=False)
  prompts = {"q1": "Café, ☕ \"quoted\"", "q2": "", "q3": "line\nbreak"}
  rows = [("m-a", "q1", 1, "gsm8k"), ("m-b", "q1", 0, "gsm8k"), ("m-a", "q2", 0, "mmlu")]
  train = pd.DataFrame(rows, columns=["model_id", "prompt_id", "label", "category"])
  train["prompt"] = train["prompt_id"].map(prompts)
  train.to_csv(d / "train.csv", index=False)
  val = pd.DataFrame([("m-b", "q3", 1, "mmlu")], columns=["model_id", "prompt_id", "label", "category"])
  val["prompt"] = prompts["q3"]
  val.to_csv(d / "val.csv", index=False)
  np.save(d / "question_embeddings.npy", np.arange(12, dtype=np.float32).reshape(3, 4))
  return str(d)


def _assert_same(a: data_lib.ResponseData, b: data_lib.ResponseData):
  for field in ("name", "model_names", "query_ids", "prompts", "benchmark_names"):
    assert getattr(a, field) == getattr(b, field), field
  np.testing.assert_array_equal(a.embeddings, b.embeddings)
  np.testing.assert_array_equal(a.benchmark, b.benchmark)
  assert list(a.splits) == list(b.splits)
  for k in a.splits:
    np.testing.assert_array_equal(a.splits[k].queries, b.splits[k].queries)
    np.testing.assert_array_equal(a.splits[k].labels, b.splits[k].labels)
    assert a.splits[k].labels.dtype == np.int8


def test_cached_copy_round_trips_and_is_used(tmp_path, monkeypatch):
  folder = _folder(tmp_path / "data")
  cache = str(tmp_path / "cache")
  first = data_cache.load_and_cache(folder, cache)
  _assert_same(first, data_lib.load_dataset(folder))
  assert first.prompts == ("Café, ☕ \"quoted\"", "", "line\nbreak")
  (path,) = [os.path.join(cache, f) for f in os.listdir(cache)]
  with np.load(path, allow_pickle=False) as z:  # plain arrays only
    assert all(z[k].dtype != object for k in z.files)

  def no_parse(*a, **k):
    raise AssertionError("the CSV files were parsed again")

  monkeypatch.setattr(data_lib, "load_dataset", no_parse)
  _assert_same(data_cache.load_and_cache(folder, cache), first)


def test_changed_source_file_is_read_again(tmp_path):
  folder = _folder(tmp_path / "data")
  cache = str(tmp_path / "cache")
  before = data_cache.load_and_cache(folder, cache)
  assert before.split("val").labels.tolist() == [[-1, 1]]
  path = os.path.join(folder, "val.csv")
  stat = os.stat(path)
  with open(path) as f:
    text = f.read()
  with open(path, "w") as f:  # same size, same mtime: only the content differs
    f.write(text.replace("m-b,q3,1", "m-b,q3,0"))
  os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
  after = data_cache.load_and_cache(folder, cache)
  assert after.split("val").labels.tolist() == [[-1, 0]]
  assert len(os.listdir(cache)) == 2
  # Other loader arguments are other entries too.
  assert data_cache.load_and_cache(folder, cache, benchmarks="irtnet").benchmark_names != after.benchmark_names


def test_unreadable_cached_copy_is_replaced(tmp_path):
  folder = _folder(tmp_path / "data")
  cache = str(tmp_path / "cache")
  data_cache.load_and_cache(folder, cache)
  (name,) = os.listdir(cache)
  with open(os.path.join(cache, name), "wb") as f:
    f.write(b"not an npz")
  _assert_same(data_cache.load_and_cache(folder, cache), data_lib.load_dataset(folder))
  with np.load(os.path.join(cache, name), allow_pickle=False) as z:
    assert "embeddings" in z.files


def test_errors_are_not_cached(tmp_path):
  folder = _folder(tmp_path / "data")
  os.remove(os.path.join(folder, "val.csv"))
  with pytest.raises(data_lib.DataError, match="val.csv: file not found"):
    data_cache.load_and_cache(folder, str(tmp_path / "cache"))
  assert not os.path.exists(tmp_path / "cache") or not os.listdir(tmp_path / "cache")
