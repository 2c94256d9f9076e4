"""The losses a model trains with (``model.loss``): cross-entropy, or LeNet-5's MAP criterion on its RBF outputs.
One rule, without torch: the config check asks it before anything starts, the module when it is built."""

import math


def loss_refusal(loss: str | None, model: str | None, map_j) -> str | None:
    """Why ``model.loss`` cannot train this model, or None: the one rule, for the config check and the module."""
    if loss not in (None, "cross_entropy", "map"):
        return f"model.loss={loss} is not allowed: cross_entropy, or map (LeNet-5's criterion)"
    if loss != "map":
        return None
    from models.catalogue import CATALOGUE

    if not (model in CATALOGUE and CATALOGUE[model].rbf_output):
        return (f"model.loss=map is LeNet-5's MAP criterion on RBF outputs (equation 9 of the paper); model={model} "
                f"has no RBF output: use model.loss=cross_entropy")
    if not (isinstance(map_j, (int, float)) and not isinstance(map_j, bool) and math.isfinite(map_j) and map_j > 0):
        return ("model.loss=map needs its constant: model.map_j=<a number > 0> (10 in conf/model/lenet5.yaml, which "
                "says why)")
    return None
