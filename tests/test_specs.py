"""training.resolve: a config read once into typed specs, every mistake one
ConfigError naming the field, before anything is written or read."""

import math

import pytest

from configs import knn as knn_config
from configs import recommended
from configs import test as test_config
from irt_jax import training
from irt_jax.training import sizing
from irt_jax.utils import ConfigError


def test_a_config_becomes_the_specs_each_layer_takes():
  config = test_config.get_config()
  spec = training.resolve(config)
  assert spec.kind.name == "irtnet" and spec.seed == config.seed
  assert spec.batch == training.specs.BatchSpec("blocks", 256, 4096, 10)
  assert spec.optim.lr == 1e-2 and spec.optim.b2 == 0.999
  assert (spec.schedule.num_epochs, spec.schedule.plateau_factor) == (4, 0.1)
  assert spec.data.dir == "" and dict(spec.data.synthetic)["n_models"] == 12
  assert spec.model.spec(12, 32).top_k == 3 and spec.model.spec(12, 32).input_dim == 32
  assert spec.auto is None and spec.members == () and spec.record == config.to_dict()


def test_a_fitted_kind_has_no_gradient_specs():
  spec = training.resolve(knn_config.get_config())
  assert spec.kind.name == "knn" and spec.batch is spec.optim is spec.schedule is None


@pytest.mark.parametrize("change, message", [
    (lambda c: c.model.update(name="svm"), "config.model.name='svm'"),
    (lambda c: c.model.__setattr__("width", 3), "config.model.width is not a field"),
    (lambda c: c.optim.__delitem__("b1"), "needs config.optim.b1"),
    (lambda c: c.train.update(batching="rows"), "config.train.batching='rows'"),
    (lambda c: c.train.update(batch_cells=0), "config.train.batch_cells=0: expected >= 1"),
    (lambda c: c.optim.update(weight_decay=-1.0), "config.optim.weight_decay=-1.0"),
    (lambda c: c.data.synthetic.__setattr__("n_llms", 3), "config.data.synthetic:"),
    (lambda c: c.__setattr__("auto", sizing.auto_config(lr_scaling="cube")),
     "config.auto.lr_scaling='cube'"),
    (lambda c: (c.__setattr__("auto", sizing.auto_config()),
                c.train.update(batching="pairs")), "config.train.batching='blocks'"),
])
def test_each_mistake_is_one_error_naming_the_field(change, message, tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  config = test_config.get_config()
  change(config)
  with pytest.raises(ConfigError, match=None) as e:
    training.resolve(config)
  assert message in str(e.value) and "\n" not in str(e.value)
  assert list(tmp_path.iterdir()) == []  # nothing written


def test_a_recipe_member_mistake_fails_before_any_member_trains(tmp_path):
  config = recommended.get_config()
  config.members.irtnet.model.top_kk = 3
  with pytest.raises(ConfigError, match="config.model.top_kk"):
    training.run(config, str(tmp_path / "run"))
  assert not (tmp_path / "run").exists()


def test_a_recipe_resolves_its_members_with_its_data_and_seed():
  config = recommended.get_config()
  config.seed, config.data.dir = 7, "some/data"
  (name, irtnet), (_, knn), (_, logreg) = training.resolve(config).members
  assert name == "irtnet" and irtnet.seed == 7 and irtnet.data.dir == "some/data"
  assert irtnet.auto is not None and logreg.kind.name == "logreg"
  assert knn.kind.name == "knn" and knn.seed == 7 and knn.data.dir == "some/data"
  assert knn.model.fields["weighting_grid"] == ("uniform", "distance")   # the tuned kNN


def test_sized_applies_config_auto_as_sizing_resolve_does():
  config = test_config.get_config()
  config.auto = sizing.auto_config(steps_per_epoch=64, lr_scaling="sqrt")
  sized = training.resolve(config).sized(9, 4793)
  # ceil(4793 / 64) = 75 rows x 9 LLMs = 675 cells; lr x sqrt(675 / 2048).
  assert sized.batch.batch_cells == 675 and sized.auto is None
  assert sized.optim.lr == pytest.approx(1e-2 * math.sqrt(675 / 2048))
  assert sized.record == sizing.resolve(config, 9, 4793).to_dict()
  assert config.train.batch_cells == 256  # the config itself is untouched


def test_with_model_sets_the_fields_and_the_record():
  spec = training.resolve(knn_config.get_config()).with_model(k_grid=(3,))
  assert spec.model.fields["k_grid"] == (3,) and spec.record["model"]["k_grid"] == (3,)
