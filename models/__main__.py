"""``python -m models`` lists the models; ``python -m models NAME`` prints its layer table."""

import argparse
import sys

from .catalogue import CATALOGUE, natural_order

GTX_580_GIB = 3  # the memory of each of the two GPUs AlexNet was trained on


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models", description=__doc__)
    parser.add_argument("name", nargs="?", help="a model name; omit to list the models")
    parser.add_argument("--num-classes", type=int, default=None,
                        help="output classes (default: 10 for lenet5, 1000 for the ImageNet models)")
    parser.add_argument("--batch-size", type=int, default=128,
                        help="batch of the training-memory figures (default 128, AlexNet's)")
    args = parser.parse_args(argv)
    names = sorted(CATALOGUE, key=natural_order)  # the registry's names (tests/models/test_models.py)
    if args.name is None:  # from the catalogue: no network is built, torch is not imported
        for name in names:
            entry = CATALOGUE[name]
            shape = " x ".join(map(str, entry.input_shape))
            print(f"{name:18s} input {shape:13s} {entry.params:>14,} params ({entry.classes} classes)  {entry.paper}")
        return 0
    if args.name not in names:  # before torch is imported: a typo is answered at once
        print(f"error: unknown model {args.name!r}; valid models: {', '.join(names)}", file=sys.stderr)
        return 2
    import torch

    from . import create_model, format_table, input_shape, layer_table
    from .memory import format_memory, split_tower_memory, training_memory

    num_classes = args.num_classes or (10 if args.name == "lenet5" else 1000)
    model = create_model(args.name, num_classes=num_classes)
    shape = input_shape(args.name)
    print(f"{args.name}: input {' x '.join(map(str, shape))}, {num_classes} classes")
    print(format_table(layer_table(model, shape), model))
    print(f"Training memory at batch {args.batch_size}, fp32, SGD with momentum (activations: what autograd keeps "
          f"for the backward pass):")
    with torch.device("meta"):  # shapes only: no memory, no time
        meta_model = create_model(args.name, num_classes=num_classes)
    print(format_memory("one device", training_memory(meta_model, shape, args.batch_size)))
    if args.name == "alexnet":
        tower = split_tower_memory(args.batch_size, num_classes)
        fits = "fits in" if tower.total <= GTX_580_GIB * 2**30 else "does not fit in"
        print(format_memory("per GPU, two-GPU split", tower) + f" ({fits} a GTX 580's {GTX_580_GIB} GiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
