"""LeNet-5's MAP criterion (LeCun et al. 1998, section III-C, equation 9) on the RBF outputs.

    E = 1/P sum_p [ y_{D_p}(Z_p, W) + log(exp(-j) + sum_i exp(-y_i(Z_p, W))) ]

``y_i`` are the RBF units' squared distances (the network returns ``-y`` as its logits), ``D_p`` the desired
class, ``j`` a positive constant. Written with the logits ``z = -y`` it is the cross-entropy of a softmax over
the classes and one more, constant "rubbish" class of logit ``-j``: when every class's distance is far above
``j`` the rubbish class wins, and the loss (about ``y_D - j``) keeps pulling the desired class's output toward
its code; a wrong class closer than that is pushed away. (Without the term, ``j`` -> infinity, it is plain
cross-entropy, which stops pulling as soon as the distances are well apart.)
"""

import torch
import torch.nn.functional as F


def _with_rubbish(logits: torch.Tensor, j: float) -> torch.Tensor:
    return torch.cat([logits, logits.new_full((logits.shape[0], 1), -float(j))], dim=1)


def map_loss(logits: torch.Tensor, labels: torch.Tensor, j: float, ignore_index: int = -100,
             reduction: str = "mean") -> torch.Tensor:
    """Equation 9 for ``logits = -y`` (one row per pattern); ``ignore_index`` rows count for nothing."""
    return F.cross_entropy(_with_rubbish(logits, j), labels, ignore_index=ignore_index, reduction=reduction)


def output_hessian_factor(logits: torch.Tensor, j: float | None = None) -> torch.Tensor:
    """Per pattern, a matrix ``L`` with ``L L^T`` the Hessian of the loss in the logits: cross-entropy's
    (``j=None``) or the MAP criterion's. Both are ``diag(p) - p p^T`` with ``p`` the softmax over the classes
    (for MAP, the softmax that includes the rubbish class, restricted to the real ones), which is positive
    semi-definite: its eigen-decomposition gives ``L = V sqrt(Lambda)``. Shape (N, C, C)."""
    full = _with_rubbish(logits, j) if j is not None else logits
    p = full.softmax(-1)[:, :logits.shape[1]]
    hessian = torch.diag_embed(p) - p.unsqueeze(2) * p.unsqueeze(1)
    values, vectors = torch.linalg.eigh(hessian)
    return vectors * values.clamp_min(0).sqrt().unsqueeze(1)


def rbf_hessian_factor(features: torch.Tensor, centres: torch.Tensor, j: float | None = None) -> torch.Tensor:
    """Per pattern, ``L`` with ``L L^T`` the Hessian, in F6's outputs ``x``, of the loss through the fixed RBF layer
    (``y_i = |x - c_i|^2``): the MAP criterion's (``j``) or cross-entropy's on ``-y`` (``j=None``). Written out:

        H = 2 s_r I + G^T (diag(s) - s s^T) G,   G_i = dy_i/dx = 2 (x - c_i),

    ``s`` the softmax over ``-y`` (with the rubbish class for MAP), ``s_r`` the rubbish class's share (0 for
    cross-entropy): positive semi-definite. The RBF layer's own second derivative (``d^2 y_i / dx^2 = 2 I``) is
    what keeps LeNet-5's curvature alive where the loss is linear in ``y`` (every distance far above ``j``), as
    in the paper, which back-propagated second derivatives from the loss through the RBF units. Shape (N, 84, 84).
    """
    diff = features.unsqueeze(1) - centres  # (N, C, D)
    logits = -diff.pow(2).sum(-1)
    full = _with_rubbish(logits, j) if j is not None else logits
    s = full.softmax(-1)[:, :logits.shape[1]]
    rubbish = (1 - s.sum(-1)).clamp_min(0)
    g = 2 * diff
    a = torch.diag_embed(s) - s.unsqueeze(2) * s.unsqueeze(1)
    eye = torch.eye(features.shape[1], dtype=features.dtype, device=features.device)
    hessian = 2 * rubbish.view(-1, 1, 1) * eye + g.transpose(1, 2) @ a @ g
    values, vectors = torch.linalg.eigh(hessian)
    return vectors * values.clamp_min(0).sqrt().unsqueeze(1)
