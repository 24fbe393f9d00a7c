"""Property: whatever is wrong with a dataset folder, loading it either gives
exactly the content written or raises data.DataError naming the bad file; never
another exception, never a silently different matrix.

Each example writes a small valid folder in the compact layout (ids that are
small, huge or non-numeric strings, sparse labels), applies one damage drawn
from a catalogue (wrong types, missing/extra columns and fields, empty files,
non-UTF-8 bytes, duplicated rows and ids, a cell in two splits, truncated,
re-typed or reshaped .npy files, ...) and checks the outcome the damage implies.
Damage that keeps the content (extra column, duplicated identical rows, BOM,
CRLF, shuffled rows, other float widths) must load, and load the same content.
"""

import csv
import io
import os
import shutil
import tempfile

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from irt_jax.data import io as data_lib

SPLIT_FILES = ("train.csv", "val.csv", "test.csv")
ORDER_FILES = ("model_order.csv", "question_order.csv")
REQUIRED = {"model_order.csv": ["model_id"], "question_order.csv": ["prompt_id"],
            **{f: ["prompt_id", "model_id", "label"] for f in SPLIT_FILES}}
EMB = "question_embeddings.npy"

ids = st.one_of(st.integers(0, 999).map(str), st.integers(10 ** 20, 10 ** 40).map(str),
                st.text("abcxyz-_.", min_size=1, max_size=8))
safe_text = st.one_of(
    st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=12),
    st.sampled_from(["a,b", 'say "hi"', "two\nlines", " padded ", ""]))


@st.composite
def folders(draw):
  n_models, n_queries = draw(st.integers(1, 3)), draw(st.integers(3, 6))
  model_ids = draw(st.lists(ids, min_size=n_models, max_size=n_models, unique=True))
  query_ids = draw(st.lists(ids, min_size=n_queries, max_size=n_queries, unique=True))
  split_of = [0, 1, 2] + draw(st.lists(st.integers(0, 2), min_size=n_queries - 3,
                                       max_size=n_queries - 3))
  labels = np.array(draw(st.lists(st.integers(-1, 1), min_size=n_queries * n_models,
                                  max_size=n_queries * n_models)), np.int8)
  labels = labels.reshape(n_queries, n_models)
  labels[:3, 0] = np.maximum(labels[:3, 0], 0)  # every split has a known cell
  dim = draw(st.integers(1, 3))
  seed = draw(st.integers(0, 2 ** 16))
  emb = np.random.default_rng(seed).normal(size=(n_queries, dim)).astype(np.float32)
  return dict(model_ids=model_ids, names=[f"model {i}" for i in range(n_models)],
              query_ids=query_ids, categories=[("alpha", "beta")[q % 2] for q in range(n_queries)],
              split_of=split_of, labels=labels, emb=emb)


def _csv_text(header, rows):
  out = io.StringIO()
  w = csv.writer(out, lineterminator="\n")
  w.writerow(header)
  w.writerows(rows)
  return out.getvalue()


def _tables(f):
  """File name -> (header, rows) of the valid folder."""
  t = {"model_order.csv": (["model_id", "model_name"], [[m, n] for m, n in
                                                        zip(f["model_ids"], f["names"])]),
       "question_order.csv": (["prompt_id", "prompt", "category"],
                              [[q, f"prompt {i}", f["categories"][i]]
                               for i, q in enumerate(f["query_ids"])])}
  for s, name in enumerate(SPLIT_FILES):
    rows = []
    for q, split in enumerate(f["split_of"]):
      for m in range(len(f["model_ids"])):
        if split == s and f["labels"][q, m] >= 0:
          y = int(f["labels"][q, m])
          rows.append([f["query_ids"][q], f["model_ids"][m], f["categories"][q], str(y),
                       f"{float(y)}", f["names"][m]])
    t[name] = (["prompt_id", "model_id", "category", "label", "score", "model_name"], rows)
  return t


def _expected_split(f, s):
  rows = [q for q, split in enumerate(f["split_of"])
          if split == s and (f["labels"][q] >= 0).any()]
  return np.array(rows, np.int32), f["labels"][rows]


CSV_DAMAGE = ["empty", "header_only", "drop_required", "non_utf8", "short_row", "long_rows",
              "long_row", "garbage", "is_dir", "missing", "repeated_header",
              # content kept:
              "extra_column", "bom", "crlf"]
SPLIT_DAMAGE = ["bad_label", "unknown_model", "unknown_query", "in_two_splits",
                # content kept:
                "duplicate_rows", "shuffle_rows"]
ORDER_DAMAGE = ["duplicate_id"]
NPY_DAMAGE = ["empty", "garbage", "truncated", "wrong_dtype", "wrong_shape", "non_finite", "npz",
              "pickled", "missing", "is_dir",
              # content kept:
              "other_float"]
KEEPS_CONTENT = {"extra_column", "bom", "crlf", "duplicate_rows", "shuffle_rows", "other_float"}


@st.composite
def damages(draw):
  target = draw(st.sampled_from(SPLIT_FILES + ORDER_FILES + (EMB,)))
  if target == EMB:
    kinds = NPY_DAMAGE
  else:
    kinds = CSV_DAMAGE + (SPLIT_DAMAGE if target in SPLIT_FILES else ORDER_DAMAGE)
  return target, draw(st.sampled_from(kinds))


def _damage_csv(path, name, kind, header, rows, draw, folder):
  write = lambda text: open(path, "w", encoding="utf-8", newline="").write(text)
  data_rows = [list(r) for r in rows]
  if kind == "empty":
    write("")
  elif kind == "header_only":
    write(_csv_text(header, []))
  elif kind == "drop_required":
    col = header.index(draw(st.sampled_from(REQUIRED[name])))
    write(_csv_text([h for i, h in enumerate(header) if i != col],
                    [[v for i, v in enumerate(r) if i != col] for r in data_rows]))
  elif kind == "repeated_header":
    col = draw(st.sampled_from(REQUIRED[name]))
    write(_csv_text(header + [col], [r + [r[header.index(col)]] for r in data_rows]))
  elif kind == "non_utf8":
    raw = _csv_text(header, data_rows).encode()
    at = draw(st.integers(0, len(raw)))
    open(path, "wb").write(raw[:at] + draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\x80abc"]))
                           + raw[at:])
  elif kind in ("short_row", "long_row", "long_rows"):
    lines = _csv_text(header, data_rows).splitlines(keepends=True)
    if kind == "long_rows":
      lines = [lines[0]] + [l.rstrip("\n") + ",extra\n" for l in lines[1:]]
    else:  # one data line (not a continuation of a quoted field: these have none)
      i = draw(st.integers(1, len(lines) - 1))
      cut = lines[i].rstrip("\n")
      lines[i] = (cut.rsplit(",", 1)[0] if kind == "short_row" else cut + ",extra") + "\n"
    write("".join(lines))
  elif kind == "garbage":
    open(path, "wb").write(draw(st.binary(max_size=200)))
  elif kind == "is_dir":
    os.remove(path)
    os.mkdir(path)
  elif kind == "missing":
    os.remove(path)
  elif kind == "extra_column":
    write(_csv_text(header + ["note"], [r + [draw(safe_text)] for r in data_rows]))
  elif kind == "bom":
    write("\ufeff" + _csv_text(header, data_rows))
  elif kind == "crlf":
    write(_csv_text(header, data_rows).replace("\n", "\r\n"))
  elif kind == "bad_label":
    i = draw(st.integers(0, len(data_rows) - 1))
    data_rows[i][header.index("label")] = draw(st.sampled_from(
        ["2", "-1", "yes", "", "nan", "0.5", "inf", "1 1", "tru", "0x1"]))
    write(_csv_text(header, data_rows))
  elif kind in ("unknown_model", "unknown_query"):
    i = draw(st.integers(0, len(data_rows) - 1))
    col, known = (("model_id", folder["model_ids"]) if kind == "unknown_model"
                  else ("prompt_id", folder["query_ids"]))
    data_rows[i][header.index(col)] = draw(ids.filter(lambda v: v not in known))
    write(_csv_text(header, data_rows))
  elif kind == "duplicate_rows":
    picks = draw(st.lists(st.integers(0, len(data_rows) - 1), min_size=1, max_size=4))
    write(_csv_text(header, data_rows + [data_rows[i] for i in picks]))
  elif kind == "shuffle_rows":
    write(_csv_text(header, draw(st.permutations(data_rows))))
  elif kind == "duplicate_id":
    write(_csv_text(header, data_rows + [draw(st.sampled_from(data_rows))]))
  return None


def _damage_npy(path, kind, emb, draw):
  if kind == "empty":
    open(path, "wb").close()
  elif kind == "garbage":
    open(path, "wb").write(draw(st.binary(max_size=300)))
  elif kind == "truncated":
    buf = io.BytesIO()
    np.save(buf, emb)
    raw = buf.getvalue()
    open(path, "wb").write(raw[:draw(st.integers(0, len(raw) - 1))])
  elif kind == "wrong_dtype":
    dtype = draw(st.sampled_from(["int32", "int64", "bool", "complex64", "U3",
                                  "f4,f4", "uint8"]))
    np.save(path, np.zeros(emb.shape, dtype=dtype))
  elif kind == "wrong_shape":
    n, d = emb.shape
    shape = draw(st.sampled_from([(n * d,), (n, d, 1), (n + 1, d), (n - 1, d), (n, 0), (1, n, d)]))
    np.save(path, np.ones(shape, np.float32))
  elif kind == "non_finite":
    bad = emb.copy()
    bad[draw(st.integers(0, emb.shape[0] - 1)), draw(st.integers(0, emb.shape[1] - 1))] = \
        draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    np.save(path, bad)
  elif kind == "npz":
    with open(path, "wb") as f:
      np.savez(f, embeddings=emb)
  elif kind == "pickled":
    np.save(path, np.array([object()] * emb.shape[0], dtype=object), allow_pickle=True)
  elif kind == "missing":
    os.remove(path)
  elif kind == "is_dir":
    os.remove(path)
    os.mkdir(path)
  elif kind == "other_float":
    variant = draw(st.sampled_from(["float16", "float64", ">f4", "fortran"]))
    arr = np.asfortranarray(emb) if variant == "fortran" else emb.astype(variant)
    np.save(path, arr)
    return arr.astype(np.float32)
  return None


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(folder=folders(), damage=damages(), data=st.data())
def test_damaged_folder_loads_exactly_or_fails_naming_the_file(folder, damage, data):
  target, kind = damage
  d = tempfile.mkdtemp(prefix="irt_bad_input_")
  try:
    tables = _tables(folder)
    for name, (header, rows) in tables.items():
      with open(os.path.join(d, name), "w", encoding="utf-8", newline="") as f:
        f.write(_csv_text(header, rows))
    np.save(os.path.join(d, EMB), folder["emb"])
    expected_emb = folder["emb"]
    names_in_error = [target]
    if target == EMB:
      loaded_emb = _damage_npy(os.path.join(d, EMB), kind, folder["emb"], data.draw)
      if loaded_emb is not None:
        expected_emb = loaded_emb
    elif kind == "in_two_splits":  # a known cell of another split, copied into this one
      other, row = data.draw(st.sampled_from(
          [(n, r) for n in SPLIT_FILES if n != target for r in tables[n][1]]))
      header, rows = tables[target]
      with open(os.path.join(d, target), "w", encoding="utf-8", newline="") as f:
        f.write(_csv_text(header, list(rows) + [row]))
      names_in_error = [target, other]
    else:
      header, rows = tables[target]
      _damage_csv(os.path.join(d, target), target, kind, header, rows, data.draw, folder)

    optional_gone = target == "test.csv" and kind == "missing"  # test.csv is optional
    must_load = kind in KEEPS_CONTENT or optional_gone

    try:
      loaded = data_lib.load_dataset(d)
    except data_lib.DataError as e:
      assert not must_load, f"{kind} on {target} keeps the content, but loading failed: {e}"
      for name in names_in_error:
        assert name in str(e), f"{kind} on {target}: the error does not name {name}: {e}"
      return
    assert must_load, f"{kind} on {target} was loaded without an error"
    assert list(loaded.model_names) == folder["names"]
    assert list(loaded.query_ids) == folder["query_ids"]
    np.testing.assert_array_equal(loaded.embeddings, expected_emb)
    for s, name in enumerate(SPLIT_FILES):
      split = name[:-4]
      if optional_gone and split == "test":
        assert "test" not in loaded.splits
        continue
      queries, labels = _expected_split(folder, s)
      np.testing.assert_array_equal(loaded.split(split).queries, queries)
      np.testing.assert_array_equal(loaded.split(split).labels, labels)
  finally:
    shutil.rmtree(d, ignore_errors=True)
