"""The model registry builds the seed's LeNet5 exactly and refuses unknown names clearly."""

import pytest
import torch

from owtrain.models import MODELS, build_model, count_parameters, input_shape, param_spec


def test_lenet5_has_the_seed_parameter_count() -> None:
    assert count_parameters(build_model("lenet5")) == 61_706


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_maps_its_input_to_ten_logits(name: str) -> None:
    model = build_model(name)
    out = model(torch.zeros(2, *input_shape(name)))
    assert out.shape == (2, 10)


def test_same_seed_gives_identical_weights() -> None:
    a, b = build_model("lenet5", seed=3), build_model("lenet5", seed=3)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


def test_module_class_names_are_importable() -> None:
    model = build_model("owtrain.models:MLP")
    assert set(param_spec(model)) == set(param_spec(build_model("mlp")))


def test_unknown_model_lists_the_choices() -> None:
    with pytest.raises(ValueError, match="lenet5"):
        build_model("resnet9000")
