"""The curvature ``h_kk`` that SDLM divides each weight's step by: two estimates of the diagonal of the loss's
second derivative in the weights, averaged over a sample of patterns. Both split the network from the loss at
``ClassifierModule.curvature_split`` (LeNet-5's F6 outputs, with the fixed RBF layer and the MAP criterion on the
loss's side; any other model's logits), where ``output_factor(outputs)`` gives per pattern ``L`` with ``L L^T``
the loss's Hessian in the outputs (positive semi-definite). The network is evaluated in eval mode (no dropout).

- ``per_connection_diagonal``: the paper's (LeCun et al. 1998, appendix C; Becker & LeCun 1988). Second
  derivatives are back-propagated unit by unit, keeping only the diagonal at every layer (Gauss-Newton: no
  ``f''`` term): ``d2E/da_i^2 = f'(a_i)^2 sum_k w_ki^2 d2E/da_k^2``, and a weight shared by the connections
  ``V_k`` gets ``sum_{(i,j) in V_k} d2E/da_i^2 x_j^2``. Every term is >= 0, so a shared weight's curvature adds
  up over its connections. One batched pass for all the patterns. For networks that are one chain of layers.
- ``gauss_newton_diagonal``: the exact diagonal of the Gauss-Newton matrix, ``diag(J^T L L^T J)``, any model.
  For a convolution's shared weight the Jacobians of its connections add before they are squared (they can
  cancel or add up), where the paper's estimate adds their squares (docs/reproducing.md measures both).
"""

from collections.abc import Callable

import torch
from torch import nn
from torch.func import functional_call, vjp, vmap

from models.lenet import ScaledTanh, SparseConv, Subsampling

# Layers whose output is sum_j w_kj x_j + b with every weight on its own connections (coefficient 1): their
# squared-weight version applied to x^2 is the paper's recursion, and autograd runs it backwards.
WEIGHTED_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, SparseConv, Subsampling)
ELEMENTWISE = (ScaledTanh, nn.Tanh, nn.Sigmoid, nn.ReLU, nn.LeakyReLU, nn.Identity, nn.Dropout)
ROUTING = (nn.Flatten, nn.MaxPool2d)  # each output is one input (coefficient 1): d2 goes back as a gradient would


def per_connection_diagonal(model: nn.Module, images: torch.Tensor,
                            output_factor: Callable[[torch.Tensor], torch.Tensor]) -> dict[str, torch.Tensor]:
    """The paper's diagonal estimate (module docstring) averaged over ``images``, per trainable parameter (by
    name). Raises ``ValueError`` for a network that is not one chain of the layers it knows."""
    calls: list[tuple[nn.Module, torch.Tensor, torch.Tensor]] = []
    leaves = [m for m in model.modules() if not list(m.children())]
    hooks = [m.register_forward_hook(lambda m, args, out: calls.append((m, args[0], out))) for m in leaves]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            outputs = model(images)
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    breaks = [type(layer).__name__ for (_, _, before), (layer, given, _) in zip(calls, calls[1:])
              if given is not before]
    if breaks or not calls or calls[-1][2] is not outputs:
        where = (f"{breaks[0]} does not read the previous layer's output" if breaks
                 else "its last layer's output is not the network's")
        raise ValueError(f"optim.curvature=per_connection needs a network that is one chain of layers ({where}); use "
                         f"optim.curvature=gauss_newton")
    names = {p: n for n, p in model.named_parameters() if p.requires_grad}
    totals = {n: torch.zeros_like(p) for p, n in names.items()}
    d2 = output_factor(outputs).pow(2).sum(-1)  # diag(L L^T): the loss's own diagonal, per pattern and output
    for layer, x, _ in reversed(calls):
        d2 = _back(layer, x.detach(), d2, names, totals)
    return {n: t / len(images) for n, t in totals.items()}


def _back(layer: nn.Module, x: torch.Tensor, d2: torch.Tensor, names: dict, totals: dict) -> torch.Tensor:
    """One layer of the recursion: adds the layer's weights' terms to ``totals``, returns ``d2`` at its input."""
    if isinstance(layer, WEIGHTED_LAYERS):
        own = dict(layer.named_parameters(recurse=False))
        squared = {n: p.detach().pow(2).requires_grad_() for n, p in own.items()}
        x2 = x.pow(2).requires_grad_()
        with torch.enable_grad():
            out = functional_call(layer, squared, (x2,))
            grads = torch.autograd.grad(out, [x2, *squared.values()], grad_outputs=d2)
        for p, g in zip(own.values(), grads[1:]):
            if p in names:
                totals[names[p]] += g
        return grads[0]
    if isinstance(layer, ELEMENTWISE):
        with torch.enable_grad():
            a = x.requires_grad_()
            (slope,) = torch.autograd.grad(layer(a).sum(), a)  # f'(a), elementwise
        return d2 * slope.pow(2)
    if isinstance(layer, ROUTING):
        with torch.enable_grad():
            a = x.requires_grad_()
            (back,) = torch.autograd.grad(layer(a), a, grad_outputs=d2)
        return back
    raise ValueError(f"optim.curvature=per_connection does not know {type(layer).__name__}'s connections (it knows "
                     f"{', '.join(t.__name__ for t in WEIGHTED_LAYERS + ELEMENTWISE + ROUTING)}); use "
                     f"optim.curvature=gauss_newton")


def gauss_newton_diagonal(model: torch.nn.Module, images: torch.Tensor,
                          output_factor: Callable[[torch.Tensor], torch.Tensor], chunk: int = 50
                          ) -> dict[str, torch.Tensor]:
    """The diagonal of the Gauss-Newton matrix of ``model``'s loss, averaged over ``images``, per trainable
    parameter (by name). ``output_factor(logits)`` gives, per pattern, ``L`` (C x C) with ``L L^T`` the loss's
    Hessian in the logits."""
    params = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
    buffers = dict(model.named_buffers())
    totals = {n: torch.zeros_like(p) for n, p in params.items()}
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(images), chunk):
            batch = images[start:start + chunk]
            with torch.no_grad():
                factors = output_factor(model(batch))

            def one(image: torch.Tensor, factor: torch.Tensor) -> dict[str, torch.Tensor]:
                def outputs(p):
                    return functional_call(model, (p, buffers), (image.unsqueeze(0),)).squeeze(0)

                _, pullback = vjp(outputs, params)
                (columns,) = vmap(pullback)(factor.transpose(0, 1))  # J^T L_m for each column m of L
                return {n: g.pow(2).sum(0) for n, g in columns.items()}

            per_pattern = vmap(one)(batch, factors)
            for n in totals:
                totals[n] += per_pattern[n].sum(0)
    finally:
        model.train(was_training)
    return {n: t / len(images) for n, t in totals.items()}

