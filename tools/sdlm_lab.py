"""SDLM on the real MNIST in a bare PyTorch loop: the paper's procedure, one setting at a time, fast.

    python tools/sdlm_lab.py [--batch 1] [--mu 0.02] [--eta-factor 1] [--passes 1] [--steps N]
        [--curvature per_connection|gauss_newton] [--mnist ../shared/data/mnist] [--every 1000] [--seed 0]

A benchmark-style script (minutes on 2 cores), not a CI test: what docs/reproducing.md's table of settings was
measured with. LeNet-5 (models/lenet.py) on LeCun's IDX files at the paper's input scale (background -0.1, ink
1.175, the 28x28 digit in the 32x32 field), the MAP criterion (j = 10), the curvature estimated on 500 training
patterns before each pass, each step ``w -= eta_pass * batch / (mu + h) * mean gradient`` (the paper's eta by pass
times ``--eta-factor``). No Lightning, no DALI: at batch 1 it runs about 125 steps/s on one core, against the
trainer's 77. It prints the mean curvature per layer before each pass, the training loss and the error on the
first 2,000 test digits every ``--every`` steps, the test and training error after each pass; the last line is
JSON. ``python -m trainer experiment=lenet5_1998 data=mnist`` is the run itself.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import torch

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from data_pipelines.augment import LENET_MEAN, LENET_STD  # noqa: E402
from data_pipelines.prepare.mnist import FILES, IMAGES_MAGIC, LABELS_MAGIC, read_idx  # noqa: E402
from models import create_model  # noqa: E402
from trainer.optim import SDLM, map_loss, rbf_hessian_factor  # noqa: E402
from trainer.optim.sdlm import ESTIMATES  # noqa: E402

ETA = [5e-4] * 2 + [2e-4] * 3 + [1e-4] * 3 + [5e-5] * 4 + [1e-5] * 8  # section III-C, by pass


def load(folder: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    images_file, labels_file, count = FILES[split]
    images = read_idx(folder / f"{images_file}.gz", IMAGES_MAGIC, count)
    labels = read_idx(folder / f"{labels_file}.gz", LABELS_MAGIC, count)
    x = (torch.from_numpy(images.copy()).float() - LENET_MEAN) / LENET_STD
    x = torch.nn.functional.pad(x, (2, 2, 2, 2), value=-LENET_MEAN / LENET_STD).unsqueeze(1)
    return x, torch.from_numpy(labels.copy()).long()


class Features(torch.nn.Module):
    """F6's outputs: the RBF layer and the MAP criterion are the loss's side of the curvature."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.features(x)


def error(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return 100.0 * (torch.cat([net(chunk).argmax(1) for chunk in x.split(2000)]) != y).float().mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--mu", type=float, default=0.02)
    parser.add_argument("--eta-factor", type=float, default=1.0)
    parser.add_argument("--passes", type=int, default=1)
    parser.add_argument("--steps", type=int, default=0, help="stop after this many steps (0: the passes)")
    parser.add_argument("--curvature", choices=sorted(ESTIMATES), default="per_connection")
    parser.add_argument("--mnist", type=Path, default=PROJECT.parent / "shared" / "data" / "mnist")
    parser.add_argument("--every", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    (x_train, y_train), (x_test, y_test) = load(args.mnist, "train"), load(args.mnist, "val")
    torch.manual_seed(args.seed)
    net = create_model("lenet5", num_classes=10)
    optimizer = SDLM(net.parameters(), mu=args.mu, curvature=args.curvature)
    j, step, start, curve = 10.0, 0, time.perf_counter(), []
    for epoch in range(args.passes):
        order = torch.randperm(len(x_train), generator=torch.Generator().manual_seed(args.seed * 100 + epoch))
        h = ESTIMATES[args.curvature](Features(net), x_train[order[:500]],
                                      lambda z: rbf_hessian_factor(z, net.output.centres, j))
        print(f"pass {epoch + 1}: mean h " + " ".join(f"{name[4:]}:{v.mean():.2g}" for name, v in h.items()
                                                       if "weight" in name), flush=True)
        optimizer.set_curvature({p: h[f"net.{name}"] for name, p in net.named_parameters()})
        optimizer.param_groups[0]["lr"] = ETA[min(epoch, len(ETA) - 1)] * args.eta_factor * args.batch
        for first in range(0, len(x_train), args.batch):
            batch = order[first:first + args.batch]
            optimizer.zero_grad()
            map_loss(net(x_train[batch]), y_train[batch], j).backward()
            optimizer.step()  # the trainer's own SDLM: p -= lr / (mu + h) * grad
            step += 1
            if step % args.every == 0:
                with torch.no_grad():
                    loss = float(map_loss(net(x_train[batch]), y_train[batch], j))
                print(f"step {step}: loss of the last batch {loss:.3f}, test error (first 2,000) "
                      f"{error(net, x_test[:2000], y_test[:2000]):.2f} %, {time.perf_counter() - start:.0f} s",
                      flush=True)
            if args.steps and step >= args.steps:
                break
        test, train = error(net, x_test, y_test), error(net, x_train, y_train)
        curve.append({"pass": epoch + 1, "steps": step, "test_err": round(test, 2), "train_err": round(train, 2)})
        print(f"after pass {epoch + 1}: test error {test:.2f} %, training error {train:.2f} %, "
              f"{time.perf_counter() - start:.0f} s", flush=True)
        if args.steps and step >= args.steps:
            break
    print(json.dumps({**{k: v for k, v in vars(args).items() if k != "mnist"}, "curve": curve,
                      "wall_s": round(time.perf_counter() - start, 1)}))


if __name__ == "__main__":
    main()
