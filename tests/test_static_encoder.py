"""The distilled static encoder: arithmetic by hand, files, distillation from a tiny model,
and runs trained on it refusing a transformer's folder (and the reverse). No weights needed."""

import json
import os

import numpy as np
import pytest

from configs import test as test_config
from irt_jax.data import distill
from irt_jax.encoder import EncoderError, load_encoder, static
from irt_jax.routing.router import Router, RouterError
from irt_jax import training
from tests.conftest import synthetic_spec
from tests.test_encoder import _tiny_tokenizer, make_tiny_model

pytest_plugins = ["tests.router_fixtures"]   # text_run: a run trained with a tiny transformer


def hand_folder(path, max_length=None):
  """A static folder over the tiny BERT tokenizer: 'what' -> [1, 0] (weight 1), 'is' ->
  [0, 1] (weight 2), 'the' -> [3, 4] (weight 0.5); every other token [0, 0], weight 1."""
  tok, vocab, _, _ = _tiny_tokenizer("bert")
  vectors, weights = np.zeros((vocab, 2), np.float32), np.ones(vocab, np.float32)
  ids = {w: tok.token_to_id(w) for w in ("what", "is", "the")}
  vectors[ids["what"]], vectors[ids["is"]], vectors[ids["the"]] = [1, 0], [0, 1], [3, 4]
  weights[ids["is"]], weights[ids["the"]] = 2.0, 0.5
  config = {"weighting": "by hand"} | ({"max_length": max_length} if max_length else {})
  return static.save(path, vectors, weights, config, tok.to_str())


def test_encode_is_the_weighted_mean_computed_by_hand(tmp_path):
  enc = load_encoder(hand_folder(tmp_path / "static"))
  assert isinstance(enc, static.StaticEncoder) and enc.dim == 2
  got = enc.encode(["what is what", "Is THE", "", "what"])
  # (1*[1,0] + 2*[0,1] + 1*[1,0]) / 4 = [0.5, 0.5]; normalised:
  np.testing.assert_allclose(got[0], [2 ** -0.5, 2 ** -0.5], atol=1e-6)
  # (2*[0,1] + 0.5*[3,4]) / 2.5 = [0.6, 1.6] (lower-cased by the tokenizer); normalised:
  np.testing.assert_allclose(got[1], np.array([0.6, 1.6]) / np.hypot(0.6, 1.6), atol=1e-6)
  np.testing.assert_array_equal(got[2], [0, 0])   # no tokens: the zero vector, not NaN
  np.testing.assert_allclose(got[3], [1, 0], atol=1e-6)


def test_texts_are_cut_where_the_transformer_cuts_them(tmp_path):
  # max_length 4 = 2 specials + 2 words: 'the' (third word) is not seen.
  enc = load_encoder(hand_folder(tmp_path / "static", max_length=4))
  np.testing.assert_allclose(enc.encode(["what is the"])[0], np.array([1, 2]) / 5 ** 0.5,
                             atol=1e-6)
  # max_length 5 keeps all three: (1*[1,0] + 2*[0,1] + 0.5*[3,4]) / 3.5 = [2.5, 4] / 3.5.
  np.testing.assert_allclose(load_encoder(tmp_path / "static", max_length=5).encode(
      ["what is the"])[0], np.array([2.5, 4]) / np.hypot(2.5, 4), atol=1e-6)


def test_save_load_round_trip(tmp_path):
  rng = np.random.default_rng(0)
  tok, vocab, _, _ = _tiny_tokenizer("bert")
  vectors = rng.standard_normal((vocab, 5)).astype(np.float32)
  weights = rng.uniform(0, 1, vocab).astype(np.float32)
  static.save(tmp_path / "s", vectors, weights, {"weighting": "x", "max_length": 16},
              tok.to_str())
  enc = load_encoder(tmp_path / "s")
  np.testing.assert_array_equal(enc.vectors, vectors)
  np.testing.assert_array_equal(enc.weights, weights)
  assert enc.config["weighting"] == "x" and enc.config["dim"] == 5 and enc.max_length == 16
  texts = ["what is the 42?", "she sold clips"]
  np.testing.assert_allclose(enc.encode(texts),
                             static.weighted_mean(vectors, weights, enc.tokenize(texts)), atol=1e-6)
  assert load_encoder(tmp_path / "s").fingerprint == enc.fingerprint


@pytest.mark.parametrize("damage,message", [
    ("no_vectors", "lacks vectors.safetensors"),
    ("garbage_vectors", "cannot read it as safetensors"),
    ("bad_json", "not a readable JSON file"),
    ("wrong_format", "not a static encoder config"),
    ("no_tokenizer", "cannot load the tokenizer"),
    ("short_vectors", "only 3 vectors"),
])
def test_missing_or_damaged_files_are_clear_errors(tmp_path, damage, message):
  folder = hand_folder(tmp_path / "static")
  if damage == "no_vectors":
    os.remove(folder / static.VECTORS_FILE)
  elif damage == "garbage_vectors":
    (folder / static.VECTORS_FILE).write_bytes(b"\x00\x01 not safetensors")
  elif damage == "bad_json":
    (folder / static.CONFIG_FILE).write_text("{not json")
  elif damage == "wrong_format":
    (folder / static.CONFIG_FILE).write_text(json.dumps({"format": "other", "version": 1}))
  elif damage == "no_tokenizer":
    os.remove(folder / "tokenizer.json")
  else:
    tok_json = (folder / "tokenizer.json").read_text()
    static.save(folder, np.zeros((3, 2), np.float32), np.ones(3, np.float32), {}, tok_json)
  with pytest.raises(EncoderError, match=message):
    load_encoder(folder)


def test_a_static_encoder_has_no_reduced_precision(tmp_path):
  with pytest.raises(EncoderError, match="static encoder"):
    load_encoder(hand_folder(tmp_path / "static"), precision="bfloat16")


def test_pca_and_weights_by_hand():
  # Points on the line y = 2x (plus a little noise on the other axis): the first
  # axis is +-(1, 2)/sqrt(5), its sign fixed so the largest entry is positive.
  t = np.linspace(-1, 1, 9)
  x = np.stack([t, 2 * t], 1) + np.outer(np.where(np.arange(9) % 2, 1e-3, -1e-3), [2, -1])
  z = static.pca(x, 1)
  np.testing.assert_allclose(z[:, 0], (x - x.mean(0)) @ np.array([1, 2]) / 5 ** 0.5, atol=1e-5)
  np.testing.assert_allclose(static.sif_weights(np.array([0, 1, 3]), 0.25), [1, 0.5, 0.25])
  with pytest.raises(ValueError, match="PCA width"):
    static.pca(x, 3)


@pytest.fixture(scope="module")
def distilled(tmp_path_factory):
  """A static encoder distilled from the tiny BERT model (SIF weights from a synthetic
  folder's training prompts)."""
  from irt_jax.data import synthetic
  root = tmp_path_factory.mktemp("distill")
  model = make_tiny_model(root / "tiny-bert", "bert")
  data = synthetic.write(str(root / "data"), synthetic_spec(n_models=4, n_queries=60,
                                                            embed_dim=8, seed=3))
  out = distill.build(str(model), str(root / "static"), dim=8, weighting="sif", sif_a=0.01,
                      weights_from=[data], batch_size=16)
  return model, out, data, root


def test_distilled_vectors_are_the_transformers_one_token_texts(distilled):
  model, out, data, root = distilled
  transformer, enc = load_encoder(model), load_encoder(out)
  tok = transformer.tokenizer
  raw = np.load(root / "static.work" / "raw_vectors.npy")
  ids = np.array([tok.convert_tokens_to_ids(w) for w in ("what", "sold", "a")])
  expected = static.token_vectors(transformer, ids, tok.cls_token_id, tok.sep_token_id)
  np.testing.assert_allclose(raw[ids], expected, atol=1e-5)
  # ... which, normalised, is the transformer's embedding of that one-word text.
  np.testing.assert_allclose(expected[0] / np.linalg.norm(expected[0]),
                             transformer.encode(["what"])[0], atol=1e-5)
  assert enc.dim == 8 and enc.vectors.shape[0] == raw.shape[0]
  assert (enc.weights[tok.all_special_ids] == 0).all()
  assert enc.config["weighting"] == "sif" and enc.config["pca_dim"] == 8


def test_sif_counts_read_the_training_prompts_only(distilled):
  from irt_jax.data import io as data_lib
  model, _, data, _ = distilled
  transformer = load_encoder(model)
  counts, n = distill.training_token_counts([data], transformer, 200)
  full = data_lib.load_dataset(data)
  train_rows = np.unique(full.split("train").queries)
  ids = static.tokenize(static.open_tokenizer(model / "tokenizer.json"),
                        [full.prompts[r] for r in train_rows], transformer.max_length, False)
  assert n == len(train_rows) < len(full.prompts)
  assert load_encoder(distilled[1]).config["train_prompts_counted"] == n
  np.testing.assert_array_equal(counts, np.bincount(np.concatenate(ids), minlength=200))


def test_raw_vectors_are_reused_and_another_models_are_refused(distilled, tmp_path):
  model, _, _, root = distilled
  raw = root / "static.work" / "raw_vectors.npy"
  before = raw.stat().st_mtime_ns
  out = distill.build(str(model), str(tmp_path / "s4"), dim=4, weighting="uniform",
                      work_dir=str(root / "static.work"))
  assert raw.stat().st_mtime_ns == before and load_encoder(out).dim == 4
  other = make_tiny_model(tmp_path / "other", "bert", seed=1)
  with pytest.raises(distill.DistillError, match="raw vectors of another model"):
    distill.build(str(other), str(tmp_path / "s5"), dim=4, weighting="uniform",
                  work_dir=str(root / "static.work"))
  with pytest.raises(distill.DistillError, match="needs --weights_from"):
    distill.build(str(model), str(tmp_path / "s6"), dim=4, weighting="sif",
                  work_dir=str(root / "static.work"))


def test_static_and_transformer_runs_refuse_each_others_encoder(distilled, text_run, tmp_path):
  from irt_jax.data import synthetic
  model, static_dir, _, _ = distilled
  folder = synthetic.write(str(tmp_path / "data"), synthetic_spec(
      n_models=5, n_queries=80, embed_dim=8, n_benchmarks=2, true_dim=2, seed=5))
  os.remove(os.path.join(folder, "question_embeddings.npy"))   # text only: encoded by the run
  config = test_config.get_config()
  config.data.dir, config.encoder.model_dir = folder, str(static_dir)
  config.train.num_epochs = 1
  training.train_and_evaluate(config, str(tmp_path / "run"))
  router = Router.from_checkpoint(str(tmp_path / "run"))
  assert isinstance(router.encoder, static.StaticEncoder)
  assert len(router.route(["what is the sum"])) == 1
  with pytest.raises(RouterError, match="weights differ from those of the encoder 'static'"):
    Router.from_checkpoint(str(tmp_path / "run"), encoder_dir=str(model))
  with pytest.raises(RouterError, match="weights differ from those of the encoder 'tiny-encoder'"):
    Router.from_checkpoint(text_run[0], encoder_dir=str(static_dir))
