"""Small measurements the GPU check runs as processes of their own, each printing one JSON line.

    python -m tools.gpu_check.probes memory alexnet 128     # peak memory of training against the count
    python -m tools.gpu_check.probes decoders 256           # DALI mixed against cpu on generated JPEGs
    python -m tools.gpu_check.probes jpegs 8192             # generated ImageNet-sized JPEGs and their 256 copy
"""

import json
import sys


def memory(model_name: str, batch_size: int) -> dict:
    """A few fp32 SGD-with-momentum steps of ``model_name`` at ``batch_size`` on the GPU: the peak of
    ``torch.cuda.max_memory_allocated`` against what ``python -m models NAME`` counts (``models/memory.py``)."""
    import torch
    import torch.nn.functional as F

    from models import create_model, input_shape
    from models.memory import training_memory

    num_classes = 10 if model_name == "lenet5" else 1000
    shape = input_shape(model_name)
    with torch.device("meta"):
        predicted = training_memory(create_model(model_name, num_classes=num_classes), shape, batch_size)
    device = torch.device("cuda")
    torch.backends.cudnn.benchmark = False  # the default algorithms' workspaces, as a plain run
    net = create_model(model_name, num_classes=num_classes).to(device)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    images = torch.randn(batch_size, *shape, device=device)
    labels = torch.randint(0, num_classes, (batch_size,), device=device)
    torch.cuda.reset_peak_memory_stats()
    for _ in range(3):
        F.cross_entropy(net(images), labels).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    measured = torch.cuda.max_memory_allocated()
    inputs = images.numel() * images.element_size() + labels.numel() * labels.element_size()
    return {"model": model_name, "batch_size": batch_size, "precision": "fp32",
            "predicted_mib": round(predicted.total / 2**20), "measured_peak_mib": round(measured / 2**20),
            "batch_mib": round(inputs / 2**20), "measured_over_predicted": round(measured / predicted.total, 3)}


def decoders(count: int) -> dict:
    from data_pipelines.bench import image_files, make_images
    from data_pipelines.decoders import decoder_agreement

    files, _ = image_files(make_images(count))
    return decoder_agreement(files[:count])


def jpegs(count: int) -> dict:
    """``count`` generated ImageNet-sized JPEGs (made once, in the cache) and their 256x256 copy (``prepare
    resize --square``): the folders."""
    from data_pipelines.bench import make_images
    from data_pipelines.prepare.resize import resize_dataset

    originals = make_images(count)
    prepared = originals.with_name(originals.name + "-256sq")
    resize_dataset(originals, prepared, size=256, square=True)
    return {"originals": str(originals), "prepared_256": str(prepared)}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["memory"] and len(args) == 3:
        print(json.dumps(memory(args[1], int(args[2]))))
    elif args[:1] == ["jpegs"] and len(args) == 2:
        print(json.dumps(jpegs(int(args[1]))))
    elif args[:1] == ["decoders"] and len(args) == 2:
        print(json.dumps(decoders(int(args[1]))))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
