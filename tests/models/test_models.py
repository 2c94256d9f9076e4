"""The model zoo against the papers' numbers (docs/papers.md), parametrized over the registry."""

import pytest
import torch
from torch import nn

from helpers import run_cli
from models import create_model, input_shape, layer_table, list_models, register_model, trainable_params
from models.alexnet import TowerLRN
from models.lenet import C3_TABLE

PAPER_TOTALS = {  # 1000 classes (LeNet-5: 10)
    "lenet5": 60_000, "alexnet": 60_965_224, "alexnet_onetower": 61_100_840, "zfnet": 62_357_608,
    "vgg16": 138_357_544, "resnet18": 11_689_512, "resnet34": 21_797_672, "resnet50": 25_557_032,
    "resnet101": 44_549_160, "resnet152": 60_192_808,
}


def test_every_registered_model_has_a_paper_total():
    assert set(list_models()) == set(PAPER_TOTALS)


@pytest.mark.parametrize("name", list_models())
def test_parameter_total_matches_paper_and_the_catalogue(name):
    from models.catalogue import CATALOGUE

    model = create_model(name, num_classes=CATALOGUE[name].classes)
    assert trainable_params(model) == PAPER_TOTALS[name] == CATALOGUE[name].params


@pytest.mark.parametrize("name", list_models())
def test_forward_shape_and_backward(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=7)
    x = torch.randn(2, *input_shape(name))
    logits = model(x)
    assert logits.shape == (2, 7)
    assert torch.isfinite(logits).all()
    nn.functional.cross_entropy(logits, torch.tensor([1, 3])).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, f"parameters without gradient: {missing[:5]}"


@pytest.mark.parametrize("name", ["lenet5", "alexnet", "resnet18"])
def test_grayscale_input(name):
    side = 32 if name == "lenet5" else 224
    assert create_model(name, num_classes=10, in_channels=1)(torch.randn(1, 1, side, side)).shape == (1, 10)


def test_lenet5_per_layer_parameters_and_fixed_output():
    model = create_model("lenet5", num_classes=10)
    params = {r.name: r.params for r in layer_table(model, (1, 32, 32))}
    assert {k: params[k] for k in ("c1", "s2", "c3", "s4", "c5", "f6", "output")} == {
        "c1": 156, "s2": 12, "c3": 1516, "s4": 32, "c5": 48120, "f6": 10164, "output": 0}
    assert model.output.centres.shape == (10, 84)  # the 840 fixed RBF values, a buffer, saved with the model
    assert "output.centres" in model.state_dict()


def test_lenet5_c3_reads_only_its_table():
    c3 = create_model("lenet5").c3
    x = torch.randn(1, 6, 14, 14, requires_grad=True)
    for j, inputs in enumerate(C3_TABLE):
        (grad,) = torch.autograd.grad(c3(x)[0, j].sum(), x)
        read = {i for i in range(6) if grad[0, i].abs().sum() > 0}
        assert read == set(inputs), f"C3 map {j} reads {sorted(read)}, Table I says {inputs}"


def test_alexnet_output_sizes_match_the_seed_table():
    shapes = {r.name: r.output_shape for r in layer_table(create_model("alexnet"), (3, 224, 224))}
    assert shapes["pad"] == (3, 227, 227)  # cuda-convnet's implicit padding
    expected = {"conv1": (96, 55, 55), "pool1": (96, 27, 27), "conv2": (256, 27, 27), "pool2": (256, 13, 13),
                "conv3": (384, 13, 13), "conv4": (384, 13, 13), "conv5": (256, 13, 13), "pool5": (256, 6, 6),
                "fc6": (4096,), "fc7": (4096,), "fc8": (1000,)}
    assert {k: shapes[k] for k in expected} == expected


def test_alexnet_towers_conv2_4_5_read_own_half_conv3_and_fc_read_all():
    model = create_model("alexnet")
    assert [model.conv2.groups, model.conv3.groups, model.conv4.groups, model.conv5.groups] == [2, 1, 2, 2]
    x = torch.randn(1, 96, 27, 27, requires_grad=True)
    (grad,) = torch.autograd.grad(model.conv2(x)[0, :128].sum(), x)  # tower 0's outputs
    assert grad[0, :48].abs().sum() > 0 and grad[0, 48:].abs().sum() == 0
    x = torch.randn(1, 256, 13, 13, requires_grad=True)
    (grad,) = torch.autograd.grad(model.conv3(x)[0, :192].sum(), x)
    assert grad[0, 128:].abs().sum() > 0  # conv3 crosses between the GPUs


def test_alexnet_lrn_is_the_papers_and_stays_within_a_tower():
    lrn = TowerLRN()
    assert (lrn.size, lrn.alpha, lrn.beta, lrn.k) == (5, 1e-4, 0.75, 2.0)
    x = torch.rand(1, 96, 5, 5) * 50
    y = lrn(x)
    x2 = x.clone()
    x2[0, 47] *= 10  # last map of tower 0
    y2 = lrn(x2)
    assert not torch.equal(y[0, 45:47], y2[0, 45:47])  # its neighbours in the tower feel it
    assert torch.equal(y[0, 48:], y2[0, 48:])  # tower 1 does not
    # inside one tower it is exactly torch's LRN with the paper's constants
    assert torch.allclose(y[0, :48], nn.LocalResponseNorm(5, 1e-4, 0.75, 2.0)(x[:, :48])[0])


def test_alexnet_paper_initialisation():
    torch.manual_seed(0)
    model = create_model("alexnet")
    ones = {"conv2", "conv4", "conv5", "fc6", "fc7"}
    for name in ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"):
        layer = getattr(model, name)
        assert torch.all(layer.bias == (1.0 if name in ones else 0.0)), name
        assert abs(layer.weight.std().item() - 0.01) < 0.001, name
    assert [m.p for m in model.modules() if isinstance(m, nn.Dropout)] == [0.5, 0.5]


def test_zfnet_sizes_and_filter_renormalisation():
    model = create_model("zfnet")
    shapes = {r.name: r.output_shape for r in layer_table(model, (3, 224, 224))}
    assert shapes["conv1"] == (96, 110, 110) and shapes["conv2"] == (256, 26, 26) and shapes["pool5"] == (256, 6, 6)
    with torch.no_grad():
        model.conv1.weight[3].mul_(100.0)
    model.renormalize_filters()
    rms = model.conv1.weight.pow(2).mean(dim=(1, 2, 3)).sqrt()
    assert rms[3].item() == pytest.approx(0.1, rel=1e-4)
    assert rms.max().item() <= 0.1 + 1e-6


def test_registry_errors():
    with pytest.raises(ValueError, match="unknown model 'alexnet2'.*valid models: alexnet, alexnet_onetower"):
        create_model("alexnet2")

    def lenet5(**kwargs):
        return nn.Identity()

    with pytest.raises(ValueError, match="registered twice"):
        register_model(lenet5)


def test_cli_lists_models_and_prints_layer_table(tmp_path):
    listing = run_cli("models", cwd=tmp_path)
    assert listing.returncode == 0
    assert [line.split()[0] for line in listing.stdout.splitlines()] == list_models()
    table = run_cli("models", "alexnet", cwd=tmp_path)
    assert table.returncode == 0
    lines = table.stdout.splitlines()
    assert "Total params: 60,965,224" in lines
    conv1 = next(line for line in lines if line.startswith("conv1"))
    assert conv1.split() == ["conv1", "Conv2d", "96", "x", "55", "x", "55", "11/4/0", "34,944"]
    lenet = run_cli("models", "lenet5", cwd=tmp_path).stdout.splitlines()
    total = lenet.index("Total params: 60,000")
    assert lenet[total - 1] == "Fixed (not trained) values: 840"
    bad = run_cli("models", "alexnet2", cwd=tmp_path)
    assert bad.returncode == 2 and "valid models: alexnet, alexnet_onetower" in bad.stderr


def test_saved_activations_are_counted_once_per_storage():
    from torch import nn

    from models.memory import saved_activation_bytes, training_memory

    with torch.device("meta"):
        model, x = nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 5)), torch.empty(8, 10)
    # Linear 1 keeps its input (8x10), ReLU its output (8x20), which Linear 2 keeps as its input: once.
    # The weights autograd also keeps are parameters, counted apart.
    assert saved_activation_bytes(model, x) == (8 * 10 + 8 * 20) * 4
    memory = training_memory(model, (10,), batch_size=8, optimizer_states=2)
    params = (10 * 20 + 20 + 20 * 5 + 5) * 4
    assert (memory.params, memory.grads, memory.optimizer) == (params, params, 2 * params)
    assert memory.total == 4 * params + (8 * 10 + 8 * 20) * 4


def test_models_cli_shows_the_split_memory_per_gpu():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "models", "alexnet"], capture_output=True, text=True, check=True).stdout
    assert "Training memory at batch 128, fp32" in out
    assert "per GPU, two-GPU split: parameters 116.3 MiB + gradients 116.3 MiB + optimizer 116.3 MiB + " \
           "activations 817.9 MiB = 1.14 GiB (fits in a GTX 580's 3 GiB)" in out
