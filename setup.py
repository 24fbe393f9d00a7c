"""Dependencies for pyproject.toml: the runtime section of requirements.txt, pins as lower bounds.

requirements.txt is the one list (its "# Runtime" section, up to "# Tests only"); an exact pin
there (jax==0.10.2) becomes a lower bound here (jax>=0.10.2), so an install beside other
packages can resolve while the README's commands keep installing the tested set.
"""

import os
import re

from setuptools import setup


def runtime_requirements(path: str = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                  "requirements.txt")) -> list[str]:
  requirements, in_runtime = [], False
  with open(path, encoding="utf-8") as f:
    for line in f:
      line = line.strip()
      if line.startswith("#"):
        in_runtime = line.lower().startswith("# runtime")
        continue
      requirement = line.split("#", 1)[0].strip()
      if in_runtime and requirement:
        requirements.append(re.sub(r"==", ">=", requirement))
  return requirements


setup(install_requires=runtime_requirements())
