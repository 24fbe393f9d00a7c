"""Feedback: the durable log (a torn last line skipped, never a crash), POST /v1/feedback
through the openai client, and `python -m irt_jax update` refitting the judged models'
abilities into a new run (the old one untouched) with a held-out report."""

import json
import os
import subprocess
import sys

import httpx
import numpy as np
import openai
import pytest

from configs import test as test_config
from irt_jax import checkpoint
from irt_jax import predictors
from irt_jax.coldstart import ability
from irt_jax.coldstart import feedback
from irt_jax.data import resolve
from irt_jax.routing.router import Router
from irt_jax.serving import app as serving
from irt_jax import training
from tests.conftest import REPO
from tests.fake_encoder import HashEncoder
from tests.stub_upstream import Service

pytest_plugins = ["tests.router_fixtures", "tests.serve_fixtures"]   # run; stub


def _record(i, model="m0", correct=1):
  return {"id": None, "query": f"question {i}", "model": model, "correct": correct}


def test_log_survives_a_torn_last_line(tmp_path, caplog):
  path = str(tmp_path / "fb" / "log.jsonl")
  log = feedback.FeedbackLog(path)
  for i in range(3):
    log.append(_record(i))
  log.close()
  with open(path, "ab") as f:                 # a crash mid-write: half a record, no newline
    f.write(b'{"id": null, "query": "quest')
  assert [r["query"] for r in feedback.read_feedback(path)] == [f"question {i}" for i in range(3)]
  assert "torn last line" in caplog.text
  log = feedback.FeedbackLog(path)            # reopening cuts the torn tail off ...
  log.append(_record(3, correct=0))           # ... so the next record is a line of its own
  log.close()
  records = feedback.read_feedback(path)
  assert [r["query"] for r in records] == [f"question {i}" for i in range(4)]
  assert records[-1]["correct"] == 0
  with open(path, encoding="utf-8") as f:
    lines = f.read().splitlines()
  lines[1] = lines[1][:10]                    # damage in the middle is corruption, named
  with open(path, "w", encoding="utf-8") as f:
    f.write("\n".join(lines) + "\n")
  with pytest.raises(feedback.FeedbackError, match=r"log.jsonl line 2: not JSON"):
    feedback.read_feedback(path)


@pytest.mark.parametrize("record, message", [
    ([], "must be a JSON object"),
    ({"query": "q", "model": "m"}, r"missing field\(s\) \['correct'\]"),
    ({"query": " ", "model": "m", "correct": 1}, "'query' must be the non-empty query text"),
    ({"query": "q", "model": "m", "correct": 2}, "'correct' must be 0 or 1, got 2"),
    ({"query": "q", "model": "m", "correct": 1.0}, "'correct' must be 0 or 1"),
])
def test_bad_records_are_named(tmp_path, record, message):
  path = tmp_path / "log.jsonl"
  path.write_text(json.dumps(_record(0)) + "\n" + json.dumps(record) + "\n")
  with pytest.raises(feedback.FeedbackError, match=message) as e:
    feedback.read_feedback(str(path))
  assert "log.jsonl line 2" in str(e.value)


def test_completion_ids_stay_bounded():
  from irt_jax.serving.feedback import CompletionIds
  ids = CompletionIds(max_ids=3, max_chars=10)
  for i in range(5):
    ids.remember(f"c{i}", "ab", "m")
  assert len(ids) == 3 and ids.get("c1") is None and ids.get("c4") == ("ab", "m")
  ids.remember("long", "x" * 9, "m")          # 9 + 2 characters > 10: the older ones go
  assert len(ids) == 1 and ids.get("long") and ids.chars == 9


def test_heldout_split_keeps_each_query_on_one_side():
  records = [_record(i % 50, model=f"m{i % 3}") for i in range(300)]
  fit, held = feedback.split_heldout(records, 0.3)
  assert len(fit) + len(held) == 300 and 0.15 < len(held) / 300 < 0.45
  assert not {r["query"] for r in fit} & {r["query"] for r in held}
  assert feedback.split_heldout(records, 0.3) == (fit, held)          # the same every run
  assert feedback.split_heldout(records, 0.0) == (records, [])


def test_feedback_endpoint_through_the_openai_client(run, stub, tmp_path):
  predictor = predictors.load(run).predictor
  router = Router.from_predictor(predictor, HashEncoder(predictor.input_dim))
  upstreams = serving.parse_upstreams({n: {"base_url": stub} for n in router.model_names})
  log = str(tmp_path / "feedback.jsonl")
  service = Service(serving.create_app(router, upstreams, feedback_log=log))
  off = Service(serving.create_app(router, upstreams))
  try:
    client = openai.OpenAI(base_url=service.url + "/v1", api_key="x", max_retries=0)
    question = "What is the capital of Australia?"
    raw = client.chat.completions.with_raw_response.create(
        model="router-irtnet", messages=[{"role": "user", "content": question}])
    reply = raw.parse()
    assert reply.id.startswith("chatcmpl-irt-") and raw.headers["x-irt-jax-completion-id"] == reply.id
    # By completion id: the model defaults to the one that answered.
    got = client.post("/feedback", body={"id": reply.id, "correct": 1}, cast_to=object)
    assert (got["model"], got["query"], got["correct"]) == (reply.model, question, 1)
    # By query text, naming another model.
    other = router.model_names[-1]
    client.post("/feedback", body={"id": "Is 91 prime?", "model": other, "correct": 0},
                cast_to=object)
    for body, message in [
        ({"id": reply.id, "model": "gpt-nope", "correct": 1}, "'model' must be one of"),
        ({"id": "chatcmpl-irt-0000", "correct": 1}, "unknown or expired"),
        ({"id": reply.id, "correct": 2}, "'correct' must be 0 or 1"),
        ({"id": "Is 91 prime?", "correct": 1}, "'model' must be one of"),   # no model to default to
        ({"id": reply.id, "correct": 1, "score": 3}, r"unknown field\(s\) \['score'\]")]:
      with pytest.raises(openai.BadRequestError, match=message):
        client.post("/feedback", body=body, cast_to=object)
    records = feedback.read_feedback(log)
    assert [(r["id"], r["query"], r["model"], r["correct"]) for r in records] == [
        (reply.id, question, reply.model, 1), (None, "Is 91 prime?", other, 0)]
    metrics = httpx.get(service.url + "/metrics").text
    assert f'irt_feedback_total{{model="{reply.model}"}} 1.0' in metrics
    closed = openai.OpenAI(base_url=off.url + "/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.NotFoundError, match="--feedback_log"):
      closed.post("/feedback", body={"id": "q", "model": other, "correct": 1}, cast_to=object)
  finally:
    service.close()
    off.close()


def _cli(*args):
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  env.pop("XLA_FLAGS", None)
  return subprocess.run([sys.executable, "-m", "irt_jax", "update", *args], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=300)


def _listing(folder):
  return sorted((os.path.relpath(os.path.join(r, f), folder), os.path.getmtime(os.path.join(r, f)))
                for r, _, fs in os.walk(folder) for f in fs)


def _one_line_error(done, message):
  assert done.returncode != 0 and message in done.stderr, done.stderr[-2000:]
  assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_update_cli_refits_the_judged_model_into_a_new_run(run, tmp_path):
  trained = predictors.load(run)
  data = resolve.load_for_run(trained.config, run, require=())
  theta = ability.abilities(trained.predictor)
  target = 0
  wrong = theta.copy()
  wrong[target] = theta[target] - 3.0 * theta.std(0)          # the router's belief went wrong
  perturbed = str(tmp_path / "perturbed")
  feedback.save(trained, feedback.with_abilities(trained.predictor, wrong), perturbed,
                resolve.folder(trained.config, run), {"by": "test"})
  train = data.splits["train"]
  rows = np.flatnonzero(train.mask[:, target])[:300]
  log = str(tmp_path / "feedback.jsonl")
  writer = feedback.FeedbackLog(log)
  for r in rows:
    writer.append({"id": None, "query": data.prompts[train.queries[r]],
                   "model": data.model_names[target], "correct": int(train.labels[r, target])})
  writer.close()
  before = _listing(os.path.join(perturbed, "checkpoints"))
  out = str(tmp_path / "updated")
  done = _cli(f"--workdir={perturbed}", f"--feedback={log}", f"--out={out}",
              "--heldout_fraction=0.25")
  assert done.returncode == 0, done.stderr[-3000:]
  report = json.loads(done.stdout)
  assert _listing(os.path.join(perturbed, "checkpoints")) == before      # only read
  assert json.load(open(os.path.join(out, "feedback_update.json"))) == report
  meta = checkpoint.Checkpoints(out, read_only=True).restore_json()[1]
  assert [u.get("by") for u in meta["ability_updates"]] == ["test", None]
  assert meta["ability_updates"][-1]["models"] == [data.model_names[0]]
  name = data.model_names[target]
  assert list(report["models"]) == [name] and report["fitted_records"] < 300
  held = report["heldout_report"]
  assert held["scored_records"] == 300 - report["fitted_records"] > 30
  assert held["after"]["log_loss"] < held["before"]["log_loss"]
  updated = ability.abilities(predictors.load(out).predictor)
  np.testing.assert_allclose(np.delete(updated, target, 0), np.delete(wrong, target, 0),
                             rtol=1e-6)                                 # the others as they were
  assert (np.linalg.norm(updated[target] - theta[target]) <
          0.5 * np.linalg.norm(wrong[target] - theta[target]))          # most of the way back
  _one_line_error(_cli(f"--workdir={perturbed}", f"--feedback={log}", f"--out={out}"),
                  "already holds a run")
  config = test_config.get_config()
  config.train.num_epochs = 1
  with pytest.raises(training.TrainingError, match="abilities updated from feedback"):
    training.run(config, out)                                           # not trained further


@pytest.mark.slow
def test_update_cli_refuses_what_it_cannot_use(run, tmp_path):
  log = tmp_path / "feedback.jsonl"
  log.write_text(json.dumps({"query": "synthetic query 1 of 0", "model": "gpt-nope",
                             "correct": 1}) + "\n")
  out = str(tmp_path / "out")
  _one_line_error(_cli(f"--workdir={run}", f"--feedback={log}", f"--out={out}",
                       "--heldout_fraction=0"), "feedback names model(s) ['gpt-nope']")
  name = predictors.load(run).model_names[0]
  log.write_text(json.dumps({"query": "a question the data never had", "model": name,
                             "correct": 1}) + "\n")
  _one_line_error(_cli(f"--workdir={run}", f"--feedback={log}", f"--out={out}",
                       "--heldout_fraction=0"), "needs its query encoder")
  _one_line_error(_cli(f"--workdir={run}", f"--feedback={log}", f"--out={run}"),
                  "--out must differ from --workdir")
  knn = str(tmp_path / "knn")
  subprocess.run([sys.executable, "train.py", "--config=configs/knn.py", f"--workdir={knn}",
                  "--config.data.synthetic.n_models=4", "--config.data.synthetic.n_queries=100",
                  "--config.data.synthetic.embed_dim=8"], cwd=REPO, check=True,
                 capture_output=True, timeout=300)
  _one_line_error(_cli(f"--workdir={knn}", f"--feedback={log}", f"--out={out}"),
                  "model kind 'knn' has no item-response view")
  log.write_text("")
  _one_line_error(_cli(f"--workdir={run}", f"--feedback={log}", f"--out={out}"),
                  "no feedback to fit on (0 records")


def test_refit_adds_a_new_model_from_its_feedback_only_when_asked(run):
  trained = predictors.load(run)
  data = resolve.load_for_run(trained.config, run, require=())
  train = data.splits["train"]
  rows = np.arange(40)
  records = [{"query": data.prompts[train.queries[r]], "model": "newcomer",
              "correct": int(train.labels[r, 1])} for r in rows]
  emb = data.embeddings[train.queries[rows]]
  with pytest.raises(feedback.FeedbackError, match=r"\['newcomer'\].*--add_new_models"):
    feedback.refit(trained.predictor, emb, records)
  new, summary = feedback.refit(trained.predictor, emb, records, add_new=True)
  assert new.model_names == tuple(trained.model_names) + ("newcomer",)
  assert summary["newcomer"]["new"] and summary["newcomer"]["answers"] == 40
  # Cold start's own estimate: MAP under the population prior from the same answers.
  a, b = ability.item_parameters(trained.predictor, emb)
  prior = ability.prior_from_abilities(ability.abilities(trained.predictor))
  expected, _ = ability.fit_ability(a, b, train.labels[rows, 1], prior)
  np.testing.assert_allclose(ability.abilities(new)[-1], expected, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(ability.abilities(new)[:-1], ability.abilities(trained.predictor))
