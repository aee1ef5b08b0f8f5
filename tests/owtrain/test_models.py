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


@pytest.mark.parametrize(("name", "params"), [("resnet18", 11_172_810), ("resnet18-32", 11_173_962)])
def test_resnet18_has_resnet18s_parameter_count(name: str, params: int) -> None:
    model = build_model(name)
    assert count_parameters(model) == params  # 44.7 MB of fp32: the size the scale questions are about
    assert model(torch.zeros(3, *input_shape(name))).shape == (3, 10)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_is_all_parameters_no_buffers(name: str) -> None:
    """The parameter server carries parameters only (param_spec); a buffer such as BatchNorm's
    running statistics would never reach the server's evaluator or the exported model."""
    model = build_model(name)
    assert list(model.buffers()) == []
    assert set(param_spec(model)) == set(model.state_dict())


def test_resnet18_training_steps_decrease_the_loss() -> None:
    torch.manual_seed(1)
    model = build_model("resnet18")
    x, y = torch.randn(16, 1, 28, 28), torch.randint(0, 10, (16,))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for _ in range(3):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_resnet18_gives_the_same_answer_in_eval_mode_and_per_sample() -> None:
    """No batch statistics: the server's evaluation and a served model see what training saw."""
    model = build_model("resnet18-32")
    x = torch.randn(4, 3, 32, 32)
    train_out = model.train()(x)
    eval_out = model.eval()(x)
    one = model(x[:1])
    assert torch.allclose(train_out, eval_out, atol=1e-5) and torch.allclose(one, eval_out[:1], atol=1e-5)
