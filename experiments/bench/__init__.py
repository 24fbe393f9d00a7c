"""irt_jax's benchmarks: `python -m experiments.bench.run` is the suite; the others
measure one thing each. Committed results: docs/results/bench/."""
