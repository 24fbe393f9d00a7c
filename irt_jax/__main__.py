"""`python -m irt_jax <command>`: the same as the installed `irt-jax <command>`."""

from irt_jax import cli

if __name__ == "__main__":
  cli.main()
