"""``python -m data_pipelines.bench``: see the package docstring."""

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from ..layout import DataConfigError, cache_dir
from . import __doc__ as DOC
from .images import image_files, make_images, prepared_copy
from .loaders import VARIANTS, measure

# the JSON's ratios: name -> (numerator, denominator), each given when both variants ran
RATIOS = {"ratio": ("dali", "torchvision"), "dali_of_decode": ("dali", "decode_only"),
          "dali_of_decode_resize": ("dali", "decode_resize"), "prepared_ratio": ("prepared_dali", "torchvision"),
          "prepared_of_decode": ("prepared_dali", "prepared_decode_only")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m data_pipelines.bench", description=DOC.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=None,
                        help="your own images, only read: a data root (ROOT/train/<class>/*.JPEG), a folder of images "
                             "or a file listing image paths (default: --images generated JPEGs in the cache)")
    parser.add_argument("--images", type=int, default=1024,
                        help="without --data: how many ImageNet-sized JPEGs to generate (once, in this project's "
                             "cache)")
    parser.add_argument("--pass-images", type=int, default=8192,
                        help="samples read per timed pass, the image set repeated (default 8192)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="DALI threads = DataLoader workers")
    parser.add_argument("--runs", type=int, default=5, help="timed passes (median reported)")
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help=f"which to measure, comma-separated (default: all: {','.join(VARIANTS)})")
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)  # one measurement, in a subprocess
    args = parser.parse_args(argv)
    chosen = [v.strip() for v in args.variants.split(",") if v.strip()]
    if unknown := sorted(set(chosen) - set(VARIANTS)):
        parser.error(f"--variants: unknown {', '.join(unknown)}; valid: {', '.join(VARIANTS)}")
    if args.variant:  # one measurement, in a process of its own
        print(json.dumps(measure(args.variant, args.data, args.batch_size, args.threads, args.runs, args.pass_images)))
        return 0
    if args.data is None:
        print(f"ImageNet-sized JPEGs: {args.images} generated once into {cache_dir() / 'bench-jpegs'} ...", flush=True)
        args.data = make_images(args.images)
    try:
        files, _ = image_files(args.data)
    except DataConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    prepared = prepared_copy(files) if any(v.startswith("prepared_") for v in chosen) else None
    settings = ["--batch-size", str(args.batch_size), "--threads", str(args.threads), "--runs", str(args.runs),
                "--pass-images", str(args.pass_images)]
    size_kb = sum(os.path.getsize(f) for f in files) / len(files) / 1024
    prepared_files = image_files(prepared)[0] if prepared else []
    prepared_kb = sum(os.path.getsize(f) for f in prepared_files) / max(len(prepared_files), 1) / 1024
    copy = f", and their 256x256 copy in {prepared} (mean {prepared_kb:.0f} KB)" if prepared else ""
    print(f"{len(files)} JPEGs in {args.data} (mean {size_kb:.0f} KB){copy}, read {args.pass_images} times a pass; "
          f"batch {args.batch_size}, {args.threads} threads/workers, {args.runs} passes after a warm-up, median",
          flush=True)
    results = {}
    for variant in [v for v in VARIANTS if v in chosen]:
        data = prepared if variant.startswith("prepared_") else args.data
        out = subprocess.run([sys.executable, "-m", "data_pipelines.bench", "--variant", variant, "--data", str(data),
                              *settings], capture_output=True, text=True, check=True).stdout
        results[variant] = json.loads(out.strip().splitlines()[-1])
        rates = results[variant]["img_s"]
        print(f"{variant:>20}: {statistics.median(rates):7.1f} img/s (passes: {', '.join(f'{r:.0f}' for r in rates)}), "
              f"epoch start {statistics.median(results[variant]['epoch_start_s']):.2f} s, "
              f"peak memory {results[variant]['peak_mb']:.0f} MB", flush=True)
    median = {v: statistics.median(r["img_s"]) for v, r in results.items()}
    ratios = {name: round(median[a] / median[b], 3) for name, (a, b) in RATIOS.items() if a in median and b in median}
    print(json.dumps({**{f"{v}_img_s": round(median[v], 1) for v in median}, **ratios,
                      **{f"{v}_epoch_start_s": round(statistics.median(r["epoch_start_s"]), 3)
                         for v, r in results.items() if v.removeprefix("prepared_") in ("dali", "torchvision")},
                      "peak_mb": {v: round(r["peak_mb"]) for v, r in results.items()},
                      "images": len(files), "pass_images": args.pass_images, "mean_kb": round(size_kb),
                      "prepared_mean_kb": round(prepared_kb), "batch_size": args.batch_size,
                      "threads": args.threads, "runs": args.runs}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
