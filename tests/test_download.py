"""What follows the Hugging Face download, on a local snapshot of the same layout."""

import os


import numpy as np
import pandas as pd
import pytest

from irt_jax.data import io as data_lib
from irt_jax.data import download
from irt_jax.encoder import load_encoder
from tests.test_encoder import make_tiny_model


def _snapshot(root):
  """A full-form snapshot: prompt text in every row, string ids, no index files."""
  folder = root / "data" / "irtnet"
  folder.mkdir(parents=True)
  rng = np.random.default_rng(0)
  models = ["m-b", "m-a", "m-c"]
  cats = ["gsm8k_train", "mmlu_high_school_physics", "piqa", "social_iqa_v2"]
  queries = [(f"q{i}", f"question number {i}?", cats[i % 4]) for i in range(12)]
  for split, part in (("train", queries[:8]), ("val", queries[8:10]), ("test", queries[10:])):
    rows = [(m, q, int(rng.integers(0, 2)), c, p, m) for (q, p, c) in part for m in models]
    pd.DataFrame(rows, columns=["model_id", "prompt_id", "label", "category", "prompt",
                                "model_name"]).to_csv(folder / f"{split}.csv", index=False)
  return folder


def test_prepare_writes_index_files_and_embeddings(tmp_path):
  folder = _snapshot(tmp_path)
  encoder_dir = make_tiny_model(tmp_path / "tiny-encoder", "bert")
  assert download.prepare(str(tmp_path), str(encoder_dir)) == str(folder)
  data = data_lib.load_dataset(str(folder), benchmarks="irtnet")
  assert data.n_models == 3 and data.n_queries == 12
  assert data.query_ids[:3] == ("q0", "q1", "q10")  # string ids keep string order
  assert [data.benchmark_names[b] for b in data.benchmark[:4]] == ["gsm8k", "mmlu", "piqa",
                                                                   "social_iqa"]
  assert data.prompts[0] == "question number 0?"
  want = load_encoder(str(encoder_dir)).encode(list(data.prompts))
  np.testing.assert_allclose(data.embeddings, want, atol=1e-6)
  # A second prepare keeps what is there.
  stamp = os.path.getmtime(folder / "question_embeddings.npy")
  download.prepare(str(tmp_path), str(encoder_dir))
  assert os.path.getmtime(folder / "question_embeddings.npy") == stamp


def test_prepare_refuses_a_download_without_splits(tmp_path):
  (tmp_path / "empty").mkdir()
  with pytest.raises(data_lib.DataError, match="no train.csv anywhere"):
    download.prepare(str(tmp_path))


def test_unknown_dataset_name_is_refused():
  with pytest.raises(ValueError, match="expected one of"):
    download.download("nope", "/tmp/unused")


def test_prepare_names_the_split_file_that_lacks_a_column(tmp_path):
  folder = _snapshot(tmp_path)
  frame = pd.read_csv(folder / "val.csv").drop(columns=["model_id"])
  frame.to_csv(folder / "val.csv", index=False)
  with pytest.raises(data_lib.DataError, match=r"val\.csv: missing column\(s\) \['model_id'\]"):
    download.prepare(str(tmp_path))
