r"""Evaluates trained runs: the card's absl entry point, the same as `irt-jax eval`.

  python eval.py --workdir=runs/routerdc [--split=test] [--output_dir=DIR]
  python eval.py --workdir=runs/irtnet --compare=runs/logreg,runs/knn   # one table
Flags and behaviour: irt_jax/cli/eval.py.
"""

from irt_jax import cli

if __name__ == "__main__":
  cli.run_tool("eval", None)
