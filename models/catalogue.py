"""What each network of the zoo is, readable without building it or importing torch.

``python -m models`` lists this in a fraction of a second (building every network, VGG-16 included, took
19 s). The input shapes are the ones the registry gives its builders; the parameter counts are the
builders' own at the paper's class count, and tests/models/test_models.py builds every network and compares.
"""

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Entry:
    paper: str
    input_shape: tuple[int, int, int]  # (C, H, W) the network was designed for
    params: int  # trainable parameters at `classes` outputs
    classes: int = 1000
    rbf_output: bool = False  # Euclidean RBF units with fixed centres (LeNet-5): what the MAP criterion needs


CATALOGUE: dict[str, Entry] = {
    "alexnet": Entry("Krizhevsky et al. 2012 (the two-GPU network, grouped)", (3, 224, 224), 60_965_224),
    "alexnet_onetower": Entry("Krizhevsky 2014 (torchvision's one tower)", (3, 224, 224), 61_100_840),
    "lenet5": Entry("LeCun et al. 1998", (1, 32, 32), 60_000, classes=10, rbf_output=True),
    "resnet18": Entry("He et al. 2015", (3, 224, 224), 11_689_512),
    "resnet34": Entry("He et al. 2015", (3, 224, 224), 21_797_672),
    "resnet50": Entry("He et al. 2015", (3, 224, 224), 25_557_032),
    "resnet101": Entry("He et al. 2015", (3, 224, 224), 44_549_160),
    "resnet152": Entry("He et al. 2015", (3, 224, 224), 60_192_808),
    "vgg16": Entry("Simonyan & Zisserman 2014", (3, 224, 224), 138_357_544),
    "zfnet": Entry("Zeiler & Fergus 2013", (3, 224, 224), 62_357_608),
}


def natural_order(name: str) -> list:
    """The key that sorts resnet18 before resnet101."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]
