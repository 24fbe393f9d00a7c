"""Protocols that train as part of an evaluation (leave-one-benchmark-out), so they sit above training and evaluation."""
