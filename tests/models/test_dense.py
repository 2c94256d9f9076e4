"""The fully connected layers as convolutions (dense evaluation): the same logits at the design size, a score map
over a larger image, and the averaging of ``ClassifierModule.dense_scores``."""

import pytest
import torch

from models import create_model
from models.dense import fully_convolutional
from trainer.run.module import ClassifierModule


@pytest.mark.parametrize("name", ["alexnet", "zfnet", "vgg16", "alexnet_onetower"])
def test_at_the_design_size_the_dense_form_gives_the_networks_logits(name):
    """224 px: the last convolutional map is exactly fc6's input, the score map is 1x1 and the logits are the
    centre-crop network's, to float tolerance; the weights are shared, not copied."""
    torch.manual_seed(0)
    net = create_model(name, num_classes=10).eval()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        logits, scores = net(x), fully_convolutional(net)(x)
    assert scores.shape == (2, 10, 1, 1)
    assert torch.allclose(scores.flatten(1), logits, rtol=1e-4, atol=1e-5 * logits.abs().max().item())
    dense_params = {p.data_ptr() for p in fully_convolutional(net).parameters()}
    assert dense_params == {p.data_ptr() for p in net.parameters()}
    with torch.no_grad():
        assert fully_convolutional(net)(torch.randn(1, 3, 256, 320)).shape == (1, 10, 2, 4)  # a map over 256 x 320


def test_resnet_averaged_score_map_is_its_global_pool_at_any_size():
    torch.manual_seed(0)
    net = create_model("resnet18", num_classes=10).eval()
    for size in ((224, 224), (256, 352)):
        x = torch.randn(2, 3, *size)
        with torch.no_grad():
            assert torch.allclose(fully_convolutional(net)(x).mean((2, 3)), net(x), atol=1e-4)


def test_lenet_has_no_dense_form():
    with pytest.raises(ValueError, match=r"LeNet-5 was evaluated on its 32x32 field: protocol=center"):
        fully_convolutional(create_model("lenet5", num_classes=10, in_channels=1))


def test_dense_scores_average_the_map_then_the_mirror_and_the_scales():
    """The map averaged over its positions, softmax, the image and its mirror averaged, then every scale."""
    torch.manual_seed(0)
    module = ClassifierModule("alexnet", num_classes=10).eval()
    views = (torch.randn(3, 256, 288), torch.randn(3, 224, 252))
    dense = fully_convolutional(module.net)
    expected = []
    with torch.no_grad():
        for view in views:
            for image in (view, view.flip(-1)):
                expected.append(dense(image[None]).mean((2, 3)).softmax(-1)[0])
        got = module.dense_scores(views)
        batch = module.evaluation_scores([views, views[:1]])
    assert torch.allclose(got, torch.stack(expected).mean(0), atol=1e-6) and got.sum().item() == pytest.approx(1)
    assert batch.shape == (2, 10) and torch.allclose(batch[0].exp(), got, atol=1e-6)
    resnet = ClassifierModule("resnet18", num_classes=10).eval()
    x = torch.randn(3, 256, 320)
    with torch.no_grad():  # ResNet: the same as its own global pooling, with the mirror
        own = (resnet.net(x[None]).softmax(-1) + resnet.net(x.flip(-1)[None]).softmax(-1))[0] / 2
        assert torch.allclose(resnet.dense_scores((x,)), own, atol=1e-5)
