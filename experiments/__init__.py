"""The jobs that produce the figures in docs/ (`python -m experiments.<name>`) and the
benchmarks (`python -m experiments.bench.<name>`), run from the repository root.

They use irt_jax's public API only (no `_private` names; tests/test_layering.py checks),
and irt_jax never imports them. Their committed results live under docs/results/.
"""
