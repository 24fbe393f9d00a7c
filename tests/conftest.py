"""Test setup: four forced CPU devices, so the multi-device path is the tested one.

XLA reads the flag once, when JAX starts, hence before any import of jax. Four
virtual devices share two cores in CI, so a device can reach a collective long
after the others: the rendezvous timeouts are raised from 40 s to 300 s, and
each device computes single-threaded (XLA's shared intra-op Eigen pool can
otherwise wedge a collective when devices outnumber cores).
"""

import os



def cpu_test_flags(n_devices: int) -> str:
  """XLA_FLAGS for n forced CPU devices that are safe to run collectives on two cores;
  subprocess tests (multi-process jobs) use them too."""
  return (f"--xla_force_host_platform_device_count={n_devices} "
          "--xla_cpu_multi_thread_eigen=false "
          "--xla_cpu_collective_call_terminate_timeout_seconds=300 "
          "--xla_cpu_collective_timeout_seconds=300")


os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + cpu_test_flags(4)).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import pytest  # noqa: E402

from configs import test as test_config  # noqa: E402
from irt_jax.data import synthetic  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.path.join(os.path.dirname(REPO), "shared", "data")
MINILM_DIR = os.environ.get("IRT_JAX_MINILM_DIR", os.path.join(REPO, ".models", "all-MiniLM-L6-v2"))
MPNET_DIR = os.environ.get("IRT_JAX_MPNET_DIR", os.path.join(REPO, ".models", "all-mpnet-base-v2"))


def needs_shared_data(*parts: str) -> pytest.MarkDecorator:
  """Skips a test when ../shared/data/<parts> is missing, naming the path.

  A user's clone has no ../shared beside it (docs/data.md says where that data
  comes from); CI and the project's machines have it, and run these tests."""
  path = os.path.join(SHARED_DATA, *parts)
  return pytest.mark.skipif(not os.path.exists(path),
                            reason=f"needs the shared real data: {path} is missing")


def needs_encoder(model_dir: str, file: str = "model.safetensors") -> pytest.MarkDecorator:
  """Skips a test when an encoder folder lacks `file` (weights by default; a
  tokenizer test passes its tokenizer file), naming the path and how to fetch it."""
  path = os.path.join(model_dir, file)
  return pytest.mark.skipif(
      not os.path.isfile(path),
      reason=f"needs encoder weights: {path} is missing (python -m irt_jax fetch-encoder --out=.models)")


@pytest.fixture
def config():
  return test_config.get_config()


def synthetic_spec(**overrides) -> synthetic.SyntheticSpec:
  """The configs' synthetic-data settings (their one home), with `overrides`."""
  from configs import common
  return synthetic.SyntheticSpec(**{**dict(common.get_config().data.synthetic), **overrides})


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory):
  """A small synthetic dataset in the compact layout (shared, read-only)."""
  spec = synthetic_spec(n_models=8, n_queries=200, embed_dim=16, n_benchmarks=3,
                        true_dim=3, missing_frac=0.2, seed=3)
  return synthetic.write(str(tmp_path_factory.mktemp("synthetic")), spec)
