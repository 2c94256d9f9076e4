"""The losses a model trains with (``model.loss``): cross-entropy (with ``model.label_smoothing``), or LeNet-5's MAP
criterion on its RBF outputs. One rule, without torch: the config check asks it before anything starts, the module
when it is built."""

import math


def loss_refusal(loss: str | None, model: str | None, map_j, label_smoothing=0.0, mixes: bool = False) -> str | None:
    """Why ``model.loss`` cannot train this model, or None: the one rule, for the config check and the module."""
    if loss not in (None, "cross_entropy", "map"):
        return f"model.loss={loss} is not allowed: cross_entropy, or map (LeNet-5's criterion)"
    if loss != "map":
        return None
    if label_smoothing:
        return (f"model.label_smoothing={label_smoothing} smooths the cross-entropy's target; model.loss=map has "
                f"no class probabilities to smooth: set model.label_smoothing=0, or model.loss=cross_entropy")
    if mixes:
        return ("model.mixup_alpha / model.cutmix_alpha mix the targets into class probabilities, which only the "
                "cross-entropy takes; model.loss=map needs one label per image: set both to 0, or "
                "model.loss=cross_entropy")
    from models.catalogue import CATALOGUE

    if not (model in CATALOGUE and CATALOGUE[model].rbf_output):
        return (f"model.loss=map is LeNet-5's MAP criterion on RBF outputs (equation 9 of the paper); model={model} "
                f"has no RBF output: use model.loss=cross_entropy")
    if not (isinstance(map_j, (int, float)) and not isinstance(map_j, bool) and math.isfinite(map_j) and map_j > 0):
        return ("model.loss=map needs its constant: model.map_j=<a number > 0> (10 in conf/model/lenet5.yaml, which "
                "says why)")
    return None
