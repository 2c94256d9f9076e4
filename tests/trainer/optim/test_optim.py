"""trainer/optim: LeNet-5's stochastic diagonal Levenberg-Marquardt, its MAP criterion and its pass-wise rates,
against brute force and hand-computed values."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from helpers import make_cfg
from trainer.optim import (
    SDLM,
    PiecewiseConstantLR,
    gauss_newton_diagonal,
    map_loss,
    output_hessian_factor,
    per_connection_diagonal,
)


def brute_force_diagonal(model: nn.Module, images: torch.Tensor, j: float | None) -> dict[str, torch.Tensor]:
    """diag(J^T H J) averaged over the patterns, from each pattern's whole Jacobian and the loss's Hessian
    written out as diag(p) - p p^T (the softmax over the classes, and MAP's rubbish class when j is given)."""
    from torch.func import functional_call, jacrev

    params = {n: p.detach() for n, p in model.named_parameters()}
    buffers = dict(model.named_buffers())
    totals = {n: torch.zeros_like(p) for n, p in params.items()}
    for image in images:
        def outputs(p):
            return functional_call(model, (p, buffers), (image.unsqueeze(0),)).squeeze(0)

        logits = outputs(params).detach()
        full = torch.cat([logits, torch.tensor([-j])]) if j is not None else logits
        p = full.softmax(0)[:len(logits)]
        hessian = torch.diag(p) - torch.outer(p, p)
        jacobian = jacrev(outputs)(params)  # name -> (C, *shape)
        for n, jac in jacobian.items():
            flat = jac.reshape(len(logits), -1)  # (C, k)
            totals[n] += torch.einsum("ok,ol,lk->k", flat, hessian, flat).reshape(totals[n].shape)
    return {n: t / len(images) for n, t in totals.items()}


@pytest.mark.parametrize("j", [None, 1.5], ids=["cross-entropy", "map"])
def test_the_curvature_is_the_exact_gauss_newton_diagonal(j):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3))
    images = torch.randn(7, 5)
    found = gauss_newton_diagonal(net, images, lambda logits: output_hessian_factor(logits, j), chunk=3)
    expected = brute_force_diagonal(net, images, j)
    for name in expected:
        torch.testing.assert_close(found[name], expected[name], rtol=1e-5, atol=1e-8)


def test_the_curvature_of_lenet5_is_exact_through_its_sparse_c3_and_rbf_output():
    from models import create_model

    torch.manual_seed(1)
    net = create_model("lenet5", num_classes=10)
    images = torch.randn(3, 1, 32, 32)
    found = gauss_newton_diagonal(net, images, lambda logits: output_hessian_factor(logits, 10.0))
    expected = brute_force_diagonal(net, images, 10.0)
    assert set(found) == set(expected) and len(found) == 16
    for name in expected:
        torch.testing.assert_close(found[name], expected[name], rtol=1e-4, atol=1e-9)


def test_the_papers_curvature_is_the_exact_diagonal_for_one_layer_without_shared_weights():
    # w_ij reaches only output i through one connection: both estimates are sum_p H_ii x_j^2
    torch.manual_seed(2)
    layer, images = nn.Linear(5, 3), torch.randn(6, 5)
    factor = lambda logits: output_hessian_factor(logits, 1.5)  # noqa: E731
    paper, exact = per_connection_diagonal(layer, images, factor), gauss_newton_diagonal(layer, images, factor)
    for name in exact:
        torch.testing.assert_close(paper[name], exact[name], rtol=1e-5, atol=1e-9)


def test_the_papers_curvature_adds_up_each_shared_weights_connections():
    """LeCun et al. 1998, appendix C, by hand: d2 at a unit's input = f'(a)^2 sum_k w_k^2 d2_k (kept diagonal),
    and a shared weight gets sum over its connections of d2_i x_j^2 (the convolution unrolled with unfold)."""
    torch.manual_seed(3)
    conv, fc = nn.Conv2d(2, 3, 3), nn.Linear(3 * 2 * 2, 4)
    net = nn.Sequential(conv, nn.Tanh(), nn.MaxPool2d(2), nn.Flatten(), fc)
    x = torch.randn(5, 2, 6, 6)
    found = per_connection_diagonal(net, x, lambda logits: output_hessian_factor(logits, None))

    with torch.no_grad():
        a = conv(x)
        pooled, where = F.max_pool2d(torch.tanh(a), 2, return_indices=True)
        flat = pooled.flatten(1)
        d2_out = output_hessian_factor(fc(flat), None).pow(2).sum(-1)  # diag(H) per pattern
        expected = {"4.weight": torch.einsum("no,nj->oj", d2_out, flat.pow(2)), "4.bias": d2_out.sum(0)}
        d2_pooled = (d2_out @ fc.weight.pow(2)).view_as(pooled)
        d2_tanh = torch.zeros_like(a).flatten(2).scatter_add_(2, where.flatten(2), d2_pooled.flatten(2)).view_as(a)
        d2_a = d2_tanh * (1 - torch.tanh(a).pow(2)).pow(2)
        patches = F.unfold(x, 3).pow(2)  # (N, 2*3*3, 16 positions): each connection's x_j^2
        expected["0.weight"] = torch.einsum("nol,nkl->ok", d2_a.flatten(2), patches).view_as(conv.weight)
        expected["0.bias"] = d2_a.sum((0, 2, 3))
    assert set(found) == set(expected)
    for name in expected:
        torch.testing.assert_close(found[name], expected[name] / len(x), rtol=1e-5, atol=1e-9)


def test_the_papers_curvature_refuses_a_network_that_is_not_a_chain_of_known_layers():
    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(4, 4)

        def forward(self, x):
            return x + self.linear(x)

    factor = lambda logits: output_hessian_factor(logits, None)  # noqa: E731
    with pytest.raises(ValueError, match="one chain of layers.*optim.curvature=gauss_newton"):
        per_connection_diagonal(Residual(), torch.randn(3, 4), factor)
    with pytest.raises(ValueError, match="does not know BatchNorm1d's connections"):
        per_connection_diagonal(nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4)), torch.randn(3, 4), factor)


def test_the_map_criterion_is_equation_9():
    # y = (1, 2, 4), the desired class 0, j = 1, worked by hand: e^-1 = 0.367879, e^-1 = 0.367879 (the rubbish
    # class), e^-2 = 0.135335, e^-4 = 0.018316; their sum 0.889409; log = -0.117198; E = 1 - 0.117198 = 0.882802
    y = torch.tensor([[1.0, 2.0, 4.0]])
    assert map_loss(-y, torch.tensor([0]), j=1.0).item() == pytest.approx(0.882802, abs=1e-6)
    # the mean over patterns, and the formula itself for other values
    y = torch.tensor([[0.5, 3.0, 9.0], [7.0, 0.2, 1.0]])
    labels, j = torch.tensor([0, 2]), 2.5
    formula = sum(float(y[p, labels[p]]) + math.log(math.exp(-j) + sum(math.exp(-v) for v in y[p].tolist()))
                  for p in range(2)) / 2
    assert map_loss(-y, labels, j).item() == pytest.approx(formula, rel=1e-6)


def test_an_sdlm_step_divides_each_gradient_by_mu_plus_its_curvature():
    w = nn.Parameter(torch.tensor([1.0, 2.0, 3.0]))
    optimizer = SDLM([w], lr=0.1, mu=0.02)
    w.grad = torch.tensor([0.5, -1.0, 2.0])
    with pytest.raises(RuntimeError, match="no curvature estimate"):
        optimizer.step()
    optimizer.set_curvature({w: torch.tensor([0.0, 0.98, 4.98])})
    optimizer.step()
    expected = torch.tensor([1.0 - 0.1 * 0.5 / 0.02, 2.0 + 0.1 * 1.0 / 1.0, 3.0 - 0.1 * 2.0 / 5.0])
    torch.testing.assert_close(w.detach(), expected)
    state = optimizer.state_dict()  # the curvature travels in checkpoints: a resumed pass steps the same
    again = SDLM([nn.Parameter(torch.zeros(3))], lr=0.1)
    again.load_state_dict(state)
    assert torch.equal(next(iter(again.state.values()))["curvature"], torch.tensor([0.0, 0.98, 4.98]))


def test_the_global_rate_follows_the_papers_passes_times_the_batch():
    w = nn.Parameter(torch.zeros(1))
    optimizer = SDLM([w])
    schedule = PiecewiseConstantLR(optimizer, [5e-4, 2e-4, 1e-4, 5e-5, 1e-5], [2, 5, 8, 12], scale=4)
    rates = []
    for _ in range(20):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step = lambda *a: None  # the rate only
        schedule.step()
    per_pattern = [r / 4 for r in rates]
    assert per_pattern == pytest.approx([5e-4] * 2 + [2e-4] * 3 + [1e-4] * 3 + [5e-5] * 4 + [1e-5] * 8)


def test_the_papers_recipe_trains_with_its_curvature_and_schedule(tmp_path, digits_cache):
    """experiment=lenet5_1998 end to end on the digits (a few batches): SDLM with a curvature for every
    parameter, the MAP loss, the pass-wise rate; and a model without an RBF output refuses the MAP loss."""
    from trainer.run.checkpoints import load_checkpoint
    from trainer.train import train

    result = train(make_cfg(tmp_path, digits_cache, "experiment=lenet5_1998", "trainer.max_epochs=3",
                            "trainer.limit_train_batches=80", "trainer.limit_val_batches=20", "logger=none",
                            "trainer.num_sanity_val_steps=0", "optim.samples=48"))  # the paper's 500: 40 s a pass
    saved = load_checkpoint(result["last_ckpt"])
    optimizer = saved["optimizer_states"][0]
    assert len(optimizer["state"]) == 16 and all("curvature" in s for s in optimizer["state"].values())
    assert all(bool((s["curvature"] >= 0).all()) for s in optimizer["state"].values())  # Gauss-Newton: >= 0
    assert optimizer["param_groups"][0]["lr"] == pytest.approx(2e-4 * 4)  # pass 3: 0.0002 per pattern x 4 a step
    assert result["val/top1_err"] < 90  # it learned something in 240 steps of 4 (chance: 90 %)
    from trainer.config_check import ConfigValueError

    with pytest.raises(ConfigValueError, match="model.loss=map is LeNet-5's MAP criterion on RBF outputs"):
        train(make_cfg(tmp_path / "r", digits_cache, "model=resnet18", "+model.loss=map", "+model.map_j=10",
                       "logger=none"))
