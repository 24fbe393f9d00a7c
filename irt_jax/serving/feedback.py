"""POST /v1/feedback: which completion (or query) was answered correctly.

The service issues its own completion ids (`chatcmpl-irt-<hex>`) and keeps the
last `max_ids` of them in memory with the query text and the model that
answered, so feedback can name an answer by its id alone; the record written
to the log (`coldstart.feedback.FeedbackLog`) carries the query text, so the
log is self-contained and the map can stay small. An id that is not one of
the service's is taken as the query text itself.
"""

from __future__ import annotations

import collections
import time
import uuid

from irt_jax.serving.requests import ApiError, Limits, query

ID_PREFIX = "chatcmpl-irt-"
COMPLETION_HEADER = "x-irt-jax-completion-id"


def new_id() -> str:
  return ID_PREFIX + uuid.uuid4().hex


class CompletionIds:
  """A bounded map completion id -> (query text, model that answered): at most
  `max_ids` entries and `max_chars` characters of query text (a query may be
  32,000 characters long), the oldest dropped first."""

  def __init__(self, max_ids: int = 100_000, max_chars: int = 50_000_000):
    self.max_ids, self.max_chars = max_ids, max_chars
    self.chars = 0
    self._map: collections.OrderedDict[str, tuple[str, str]] = collections.OrderedDict()

  def remember(self, completion_id: str, text: str, model: str) -> None:
    self._map[completion_id] = (text, model)
    self.chars += len(text)
    while len(self._map) > self.max_ids or self.chars > self.max_chars:
      _, (old, _) = self._map.popitem(last=False)
      self.chars -= len(old)

  def get(self, completion_id: str) -> tuple[str, str] | None:
    return self._map.get(completion_id)

  def __len__(self) -> int:
    return len(self._map)


def parse_feedback(body, ids: CompletionIds, model_names, limits: Limits) -> dict:
  """The log record for a feedback request {"id", "model", "correct"}.

  `model` may be left out when `id` is a completion id (the model that
  answered it is meant); it must be one of the router's models, since only
  those have an ability to update.
  """
  if not isinstance(body, dict):
    raise ApiError(400, 'feedback must be a JSON object {"id", "model", "correct"}')
  allowed = {"id", "model", "correct"}
  unknown = sorted(set(body) - allowed)
  if unknown:
    raise ApiError(400, f"unknown field(s) {unknown}; /v1/feedback takes {sorted(allowed)}")
  key = body.get("id")
  if not isinstance(key, str) or not key.strip():
    raise ApiError(400, "'id' must be a completion id this service issued or the query text",
                   code="id")
  known = ids.get(key)
  if known is None and key.startswith(ID_PREFIX):
    raise ApiError(400, f"completion id {key!r} is unknown or expired (the service keeps the "
                        f"last {ids.max_ids}); send the query text as 'id' instead", code="id")
  text, answered = known if known else (query(key, "'id' (the query text)", limits), None)
  model = body.get("model", answered)
  if not isinstance(model, str) or model not in model_names:
    raise ApiError(400, f"'model' must be one of the router's models ({', '.join(model_names)}), "
                        f"got {model!r}", code="model")
  correct = body.get("correct")
  if correct not in (0, 1) or isinstance(correct, float):
    raise ApiError(400, f"'correct' must be 0 or 1, got {correct!r}", code="correct")
  return {"time": round(time.time(), 3), "id": key if known else None, "query": text,
          "model": model, "correct": int(correct)}
