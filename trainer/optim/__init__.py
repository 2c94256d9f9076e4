"""What the papers trained with that PyTorch does not ship: LeNet-5's stochastic diagonal Levenberg-Marquardt
(``sdlm.py``: the optimizer and the callback that renews its curvature before each pass; ``curvature.py``: the
paper's per-connection estimate of that curvature and the exact Gauss-Newton diagonal), its MAP criterion on the
RBF outputs (``map_loss.py``) and its pass-wise learning rates (``schedules.py``); and the modern recipes' weight
decay by kind of parameter (``param_groups.py``). Plain PyTorch, used through the configs (``optim=sdlm``,
``schedule=lenet5_passes``, ``model.loss=map``, ``optim.norm_weight_decay``); the callback is the one Lightning piece.
"""

from .curvature import gauss_newton_diagonal, per_connection_diagonal
from .map_loss import map_loss, output_hessian_factor, rbf_hessian_factor
from .schedules import PiecewiseConstantLR
from .sdlm import SDLM, SDLMCurvature

__all__ = ["SDLM", "SDLMCurvature", "gauss_newton_diagonal", "per_connection_diagonal", "map_loss",
           "output_hessian_factor", "rbf_hessian_factor", "PiecewiseConstantLR"]
