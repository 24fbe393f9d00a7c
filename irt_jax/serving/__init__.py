"""The OpenAI-compatible HTTP routing service (app)."""
