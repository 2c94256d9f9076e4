"""``python -m trainer.export CKPT --format torchvision|safetensors|onnx --out FILE``: a trained network, out of this
project.

- ``torchvision``: a plain state dict. For the networks torchvision ships (ResNets, VGG-16, the
  one-tower AlexNet) it loads strictly into ``torchvision.models.<arch>(num_classes=...)``; for this
  project's own (the two-tower ``alexnet``, ``zfnet``, ``lenet5``) into the builder it names,
  ``models.create_model(<name>, num_classes=..., in_channels=...)``. A two-GPU-split checkpoint holds
  the grouped AlexNet's weights, so it exports as the grouped AlexNet.
- ``onnx``: the network in inference mode (dropout off), batch dimension dynamic, input ``images``
  (N, C, H, W at the model's design size, normalised as its data preset does), output ``logits``;
  checked with onnxruntime against PyTorch on a batch before the command says it is done.

The file is written beside its target and renamed into place; an existing file is never overwritten.
ONNX and safetensors need the optional ``export`` dependencies (``make install`` installs them).
"""

if __name__ == "__main__":  # before the libraries load (seconds): the collector paused, as python -m trainer does
    from .cli import pause_collector

    pause_collector()

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

import torch

from models import create_model
from models.weights import NET_PREFIX, TORCHVISION_NAMES

from .cli import REFUSED
from .run.checkpoints import CheckpointError, checkpoint_weights, load_checkpoint

ONNX_TOLERANCE = 1e-4  # largest |onnxruntime - PyTorch| over the batch, relative to the largest logit
ONNX_SINGLE_FILE_LIMIT = 2**31 - 2**26  # protobuf's 2 GiB per message, less room for the graph itself


class ExportError(ValueError):
    """A checkpoint or an output that cannot be exported to (the message says why)."""


def network_from_checkpoint(path: Path, weights: str = "live") -> tuple[torch.nn.Module, dict]:
    """The checkpoint's network in evaluation mode, with its trained weights or their moving average (``weights``:
    ``live`` or ``ema``), and its hyperparameters."""
    ckpt = load_checkpoint(path)
    hparams = ckpt.get("hyper_parameters")
    if not isinstance(hparams, dict) or not hparams:
        raise ExportError(f"{path} is not a checkpoint written by this trainer (no hyper_parameters)")
    net = create_model(hparams["model_name"], num_classes=hparams["num_classes"], in_channels=hparams["in_channels"])
    state = checkpoint_weights(ckpt, weights, path)
    net.load_state_dict({k[len(NET_PREFIX):]: v for k, v in state.items() if k.startswith(NET_PREFIX)})
    return net.eval(), hparams


def _write_beside(out: Path, write) -> list[Path]:
    """``write(path)`` into a temporary folder beside ``out`` (``path`` has ``out``'s name), then each file it
    wrote moved beside ``out`` under its own name: ``out`` last, never over an existing file. The files get the
    user's usual mode (the umask's), as any file they write. Returns the files written."""
    if out.exists():
        raise ExportError(f"--out {out} exists; it is left as it is: give a new file name")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    except OSError as e:  # a read-only folder or mount, a parent that is a file
        raise ExportError(f"cannot write into {out.parent}: {e.strerror}; give --out in a folder you can write "
                          f"to") from None
    try:
        write(folder / out.name)
        written = sorted(folder.iterdir(), key=lambda p: p.name == out.name)  # out itself last
        for path in written:
            if (out.parent / path.name).exists():
                raise ExportError(f"{out.parent / path.name} exists; it is left as it is: give a new file name")
        for path in written:
            os.replace(path, out.parent / path.name)
        return [out.parent / p.name for p in written]
    finally:
        shutil.rmtree(folder, ignore_errors=True)  # ours: made just above


def _safetensors():
    try:
        import safetensors.torch
    except ImportError as e:
        raise ExportError("--format safetensors needs the safetensors package: make install (or pip install "
                          "'.[export]')") from e
    return safetensors.torch


def export_state_dict(net: torch.nn.Module, hparams: dict, out: Path, fmt: str = "torchvision") -> str:
    """Writes the state dict, with ``torch.save`` (``fmt="torchvision"``) or as safetensors; returns the line that
    loads it (checked here, strictly)."""
    name, classes, channels = hparams["model_name"], hparams["num_classes"], hparams["in_channels"]
    state = {k: v.contiguous() for k, v in net.state_dict().items()}  # NCHW, whatever the training layout
    if fmt == "safetensors":
        st = _safetensors()
        metadata = {"model_name": name, "num_classes": str(classes), "in_channels": str(channels),
                    "input_size": str(hparams.get("input_size", 224))}
        _write_beside(out, lambda path: st.save_file(state, str(path), metadata=metadata))
        load, read = st.load_file, f"safetensors.torch.load_file({str(out)!r})"
    else:
        _write_beside(out, lambda path: torch.save(state, path))
        load, read = (lambda path: torch.load(path, weights_only=True)), f"torch.load({str(out)!r}, weights_only=True)"
    if name in TORCHVISION_NAMES and channels == 3:
        import torchvision

        loader = f"torchvision.models.{TORCHVISION_NAMES[name]}(num_classes={classes})"
        getattr(torchvision.models, TORCHVISION_NAMES[name])(num_classes=classes).load_state_dict(load(out))
    else:
        loader = f"models.create_model({name!r}, num_classes={classes}, in_channels={channels})"
        net = create_model(name, num_classes=classes, in_channels=channels)
        net.load_state_dict(load(out))
    return f"{loader}.load_state_dict({read})"


def export_onnx(net: torch.nn.Module, hparams: dict, out: Path, batch: int = 4) -> float:
    """Writes the ONNX model; returns onnxruntime's largest difference from PyTorch, relative to the largest logit.

    Raises:
        ExportError: the ONNX packages are missing, or onnxruntime disagrees beyond ``ONNX_TOLERANCE``.
    """
    try:
        import onnxruntime
    except ImportError as e:
        raise ExportError("--format onnx needs onnx, onnxscript and onnxruntime: make install (or pip install "
                          "'.[export]')") from e
    size = hparams.get("input_size", 224)
    images = torch.randn(batch, hparams["in_channels"], size, size, generator=torch.Generator().manual_seed(0))

    def write(path: Path) -> None:
        program = torch.onnx.export(net, (images,), input_names=["images"], output_names=["logits"], dynamo=True,
                                    dynamic_shapes=({0: torch.export.Dim("batch")},), verbose=False)
        # One self-contained file, unless the weights pass protobuf's 2 GB limit: then they go to a visible
        # <name>.data beside it (ONNX's external data), which the message names
        program.save(str(path), external_data=weight_bytes(net) >= ONNX_SINGLE_FILE_LIMIT)

    written = _write_beside(out, write)
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        expected = net(images)
    got = torch.from_numpy(session.run(["logits"], {"images": images.numpy()})[0])
    error = ((got - expected).abs().max() / expected.abs().max()).item()
    if error > ONNX_TOLERANCE:
        for path in written:
            path.unlink()
        raise ExportError(f"onnxruntime's logits differ from PyTorch's by {error:.2e} of the largest (tolerance "
                          f"{ONNX_TOLERANCE:g}); nothing was kept")
    return error, [p for p in written if p != out]


def weight_bytes(net: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in net.state_dict().values())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer.export", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path, help="a checkpoint of this trainer (best.ckpt, last.ckpt, ...)")
    parser.add_argument("--format", choices=["torchvision", "safetensors", "onnx"], required=True)
    parser.add_argument("--out", type=Path, required=True, help="the file to write (must not exist)")
    parser.add_argument("--weights", choices=["live", "ema"], default="live",
                        help="the trained weights (default), or their moving average (a run with ema.decay)")
    args = parser.parse_args(argv)
    try:
        net, hparams = network_from_checkpoint(args.checkpoint, args.weights)
        if args.format in ("torchvision", "safetensors"):
            line = export_state_dict(net, hparams, args.out, args.format)
            print(f"{args.out}: the state dict of {hparams['model_name']} ({hparams['num_classes']} classes); load "
                  f"it with\n  {line}")
        else:
            error, beside = export_onnx(net, hparams, args.out)
            size = hparams.get("input_size", 224)
            data = (f"; its weights are in {', '.join(map(str, beside))} (over ONNX's 2 GB single-file limit): keep "
                    f"the files together" if beside else "; one self-contained file")
            print(f"{args.out}: {hparams['model_name']} as ONNX, input `images` (N, {hparams['in_channels']}, {size}, "
                  f"{size}), output `logits`; onnxruntime matches PyTorch to {error:.1e} of the largest logit{data}")
    except (ExportError, CheckpointError) as e:  # nothing written: refused (trainer/cli.py's exit statuses)
        print(f"error: {e}", file=sys.stderr)
        return REFUSED
    return 0


if __name__ == "__main__":
    from .cli import resume_collector

    resume_collector()
    sys.exit(main())
