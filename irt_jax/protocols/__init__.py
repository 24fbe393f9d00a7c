"""Protocols that train as part of an evaluation (leave models out), so they sit above training and evaluation."""
