"""Settings and budgets per API key, and what each answer cost.

A keys-file line may carry the key's settings (serving/keys.py):

    sk-team-a {"name": "team-a", "budget_usd": 25, "cost_weight": 0.3, "models": ["m1", "m2"]}

- `cost_weight`: used when the request names the plain router (`router-<kind>`);
  a request naming `router-<kind>-<w>` keeps its own w.
- `models`: the only models routed to or passed through for this key (403 else).
- `budget_usd`: once the key's spend reaches it, chat requests get 429 in
  OpenAI's shape (`insufficient_quota`). The spend is read from the store
  before each request, so every worker and replica sharing the store agrees;
  requests already in flight when the budget is reached still finish, so a key
  can overshoot by what those cost (one request's cost for a key used one
  request at a time).
- `name`: the key's label in /metrics (default: a prefix of its digest).

An answer's cost is its `usage` (prompt and completion tokens, as the upstream
reported them) times the model's prices (`--prices`, model_prices.csv: USD per
million input and output tokens); a model without a price costs 0. A streamed
answer is charged from the usage chunk its upstream sends when the request asks
for it (`stream_options: {"include_usage": true}`), once the stream ends;
without one it is not charged.
"""

from __future__ import annotations

import dataclasses
import json

from irt_jax.errors import UserError
from irt_jax.serving.requests import ApiError


class SettingsError(UserError, ValueError):
  """A key's settings that cannot be used; the message names the line."""


@dataclasses.dataclass(frozen=True)
class KeySettings:
  name: str | None = None
  cost_weight: float | None = None
  models: tuple[str, ...] | None = None
  budget_usd: float | None = None


NO_SETTINGS = KeySettings()


def parse_settings(text: str, where: str) -> KeySettings:
  """The settings after a key ('' for none)."""
  if not text.strip():
    return NO_SETTINGS
  try:
    obj = json.loads(text)
  except ValueError as e:
    raise SettingsError(f"{where}: the key's settings are not a JSON object ({e})") from None
  fields = {f.name for f in dataclasses.fields(KeySettings)}
  if not isinstance(obj, dict) or set(obj) - fields:
    raise SettingsError(f"{where}: settings must be a JSON object with some of "
                        f"{sorted(fields)}")
  for field in ("cost_weight", "budget_usd"):
    value = obj.get(field)
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                              or not value >= 0 or value == float("inf")):
      raise SettingsError(f"{where}: {field} must be a number >= 0, got {value!r}")
  models = obj.get("models")
  if models is not None and (not isinstance(models, list) or not models or
                             not all(isinstance(m, str) for m in models)):
    raise SettingsError(f"{where}: models must be a non-empty list of model names")
  if obj.get("name") is not None and not isinstance(obj["name"], str):
    raise SettingsError(f"{where}: name must be a string")
  return KeySettings(name=obj.get("name"), cost_weight=obj.get("cost_weight"),
                     models=tuple(models) if models else None, budget_usd=obj.get("budget_usd"))


def usage_cost(prices: dict[str, tuple[float, float]], model: str, usage) -> float:
  """USD of one answer: usage tokens x the model's (input, output) USD per million."""
  if model not in prices or not isinstance(usage, dict):
    return 0.0
  tokens = []
  for field in ("prompt_tokens", "completion_tokens"):
    value = usage.get(field)
    tokens.append(float(value) if isinstance(value, (int, float)) and value >= 0 else 0.0)
  per_in, per_out = prices[model]
  return (tokens[0] * per_in + tokens[1] * per_out) / 1e6


def refuse_if_spent(settings: KeySettings, spent: float) -> None:
  if settings.budget_usd is not None and spent >= settings.budget_usd:
    raise ApiError(429, f"this key's budget of {settings.budget_usd:g} USD is spent "
                        f"({spent:.6f} USD so far); ask for a larger budget in the keys file",
                   "insufficient_quota", "insufficient_quota")


def refuse_if_not_allowed(settings: KeySettings, model: str) -> None:
  if settings.models is not None and model not in settings.models:
    raise ApiError(403, f"model {model!r} is not allowed for this key; it may use "
                        f"{', '.join(settings.models)}", code="model_not_allowed")


def read_prices(path: str, names) -> dict[str, tuple[float, float]]:
  """{model: (input, output) USD per million tokens} from a model_prices.csv, for the
  `names` it lists (models it does not list cost 0)."""
  import pandas as pd
  try:
    frame = pd.read_csv(path, dtype=str)
  except (OSError, ValueError) as e:
    raise SettingsError(f"{path}: cannot read prices: {e}") from None
  need = {"model_name", "input_price_per_mtok", "output_price_per_mtok"}
  if need - set(frame.columns):
    raise SettingsError(f"{path}: prices need columns {sorted(need)}")
  out = {}
  for i, row in frame.iterrows():
    name = str(row["model_name"]).strip()
    try:
      pin, pout = float(row["input_price_per_mtok"]), float(row["output_price_per_mtok"])
    except ValueError:
      raise SettingsError(f"{path}: row {i + 2}: prices must be numbers") from None
    if not (pin >= 0 and pout >= 0):
      raise SettingsError(f"{path}: row {i + 2}: prices must be >= 0")
    if name in names:
      out[name] = (pin, pout)
  return out
