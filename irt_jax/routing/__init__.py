"""Routing: choice rules over logits (rules), costs per LLM (costs), and the Router that takes text or embeddings to a model."""
