r"""Trains a model kind: the card's absl entry point, the same as `irt-jax train`.

  python train.py                                   # synthetic default, ~1 minute on CPU
  python train.py --config=configs/irtnet.py --config.data.dir=../shared/data/routerdc \
      --workdir=runs/routerdc
Flags and behaviour: irt_jax/cli/train.py.
"""

from irt_jax import cli

if __name__ == "__main__":
  cli.run_tool("train", None)
