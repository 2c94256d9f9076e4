"""``make gpu-kit`` (``python -m tools.gpu_check.kit``): the packages a GPU machine without network lacks.

Run here, where the package index is reachable. Reads the target machine's package list
(``targets/py312-torch2.11.txt``: its Python, its wheel platforms, the packages it has), walks the project's
requirements through the wheels' own metadata, and fetches exactly the wheels the target lacks (for the
target's Python, with ``pip download``; a package published only as source, ``antlr4-python3-runtime``,
is built into a wheel with ``pip wheel``). It installs them into a folder as pip would on the target,
prunes what no process there loads (other Pythons' extension modules, C headers, static libraries), and
packs the result with xz into parts that fit the commands that carry them to the machine (``--part-mib``,
60 MiB: a command carries 64 MiB in all, the working tree included):

- ``base.tar.xz``: everything but NVIDIA's libraries (Hydra, omegaconf, antlr4, W&B and their needs,
  DALI's Python needs), and the fall-backs (below): it travels first, with DALI's first part, so that the
  first command can already run the torch-only stage;
- ``dali.tar.xz.1``, ``.2``, ...: DALI and NVIDIA's image codec libraries, split to the size left in each
  command; the last command reassembles them (sha256 checked) and runs the DALI stage.

``manifest.json`` lists every package==version with its wheel's sha256 and the archive it travels in, each
part's size and sha256, the commands that carry them, and what the kit's packages need of the target's own
(``target_needs``: ``click>=8.2``, ``protobuf>=...``) for ``install.py`` to check there. Where the target's
version of such a package is unknown, a pure-Python wheel of it travels as a fall-back, used only when the
target's own version does not satisfy the need; packages whose replacement could break the image's own
libraries (``protobuf``) are never replaced, only reported.

Running it again is cheap when nothing changed: the wheels are cached in ``gpu-kit/wheels/``, and the parts
are not rebuilt while the inputs (the target list, the constraints, the project's requirements, this file)
are the same.
"""

import argparse
import hashlib
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from packaging.requirements import Requirement

from trainer import PROJECT

from .wheels import (
    HEAVY_PREFIX,
    MIB,
    TARGETS,
    KitError,
    Target,
    Wheels,
    fallbacks,
    project_requirements,
    read_pins,
    read_target,
    resolve,
    sha256,
)


def stage(wheels: list[Path], folder: Path, target: Target) -> None:
    """Installs ``wheels`` into ``folder`` as pip does on the target (``--target``, no dependencies, no compiling)."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    command = [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps", "--no-index",
               "--no-compile", "--target", str(folder), "--python-version", target.python, "--implementation", "cp",
               "--only-binary=:all:", *[f"--platform={p}" for p in target.platforms], *map(str, wheels)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise KitError(f"installing the wheels into {folder} failed:\n{done.stderr.strip()}")
    for script in (folder / "bin").glob("*") if (folder / "bin").is_dir() else []:
        text = script.read_bytes()
        if text.startswith(b"#!"):  # pip wrote this machine's interpreter: the target runs its own python3
            script.write_bytes(b"#!/usr/bin/env python3" + text[text.index(b"\n"):])


PRUNED_SUFFIXES = (".h", ".hpp", ".cuh", ".a", ".pyc")


def prune(folder: Path, target: Target) -> int:
    """Removes what no process on the target loads; returns the bytes removed."""
    other_python = re.compile(r"\.cpython-3(\d+)(t?)[-.]")  # t: a free-threaded build
    removed = 0
    for path in sorted(folder.rglob("*"), reverse=True):
        if path.is_dir():
            if path.name == "__pycache__" or (path.name == "include" and "nvidia" in path.parts):
                removed += sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
                shutil.rmtree(path)
            continue
        match = other_python.search(path.name)
        if path.suffix in PRUNED_SUFFIXES or (match and (match.group(1) != target.abi[1:] or match.group(2))):
            removed += path.stat().st_size
            path.unlink()
    return removed


def pack(folder: Path, archive: Path) -> None:
    """``folder`` as a reproducible tar, xz-compressed (all cores)."""
    tar = ["tar", "--sort=name", "--mtime=@0", "--owner=0", "--group=0", "--numeric-owner", "-C", str(folder),
           "-cf", "-", "."]
    with open(archive, "wb") as out:
        tar_process = subprocess.Popen(tar, stdout=subprocess.PIPE)
        xz = subprocess.run(["xz", "-T0", "-9", "-c"], stdin=tar_process.stdout, stdout=out)
        tar_process.stdout.close()
        if tar_process.wait() or xz.returncode:
            raise KitError(f"packing {folder} into {archive} failed")


def split(archive: Path, sizes: list[int]) -> list[Path]:
    """Cuts ``archive`` into parts ``<archive>.1``, ``.2``, ... of the given sizes (the last takes the rest)."""
    parts, index = [], 1
    with open(archive, "rb") as f:
        while True:
            size = sizes[min(index - 1, len(sizes) - 1)]
            block = f.read(size)
            if not block:
                break
            part = archive.with_name(f"{archive.name}.{index}")
            part.write_bytes(block)
            parts.append(part)
            index += 1
    return parts


def input_key(target_path: Path, roots: list[Requirement], pins: dict[str, str], carry_bytes: int,
              pip_args: list[str]) -> str:
    """What the kit is built from: the target's list, the requirements, the pins, this file, the part size."""
    digest = hashlib.sha256()
    for path in (target_path, Path(__file__)):
        digest.update(path.read_bytes())
    digest.update(json.dumps([sorted(map(str, roots)), sorted(pins.items()), carry_bytes, pip_args]).encode())
    return digest.hexdigest()


def up_to_date(out: Path, key: str) -> dict | None:
    """The manifest of a kit already built from these inputs whose files are all there, else None."""
    try:
        manifest = json.loads((out / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    files = [a for a in manifest.get("archives", [])]
    if manifest.get("key") != key or not files:
        return None
    ok = all((out / a["file"]).is_file() and (out / a["file"]).stat().st_size == a["bytes"] for a in files)
    return manifest if ok else None


def build(target_path: Path, out: Path, carry_mib: float = 60, pip_args: list[str] | None = None,
          tree_mib: float | None = None, say=print, roots: list[Requirement] | None = None,
          pins: dict[str, str] | None = None) -> dict:
    """Builds (or finds up to date) the kit for ``target_path`` in ``out``; returns its manifest.

    ``carry_mib``: the most a command may carry of the kit (each part is at most this). ``tree_mib``: the
    working tree that travels with every command (measured when not given), taken off the first command,
    which also carries base.tar.xz. ``roots`` and ``pins``: the requirements and pinned versions (default:
    the project's, and constraints.txt).
    """
    pip_args = list(pip_args or [])
    carry = int(carry_mib * MIB)
    local = roots is None  # the project's own requirements: the versions this environment (CI) tests
    roots = project_requirements() if roots is None else roots
    pins = read_pins() if pins is None else pins
    key = input_key(target_path, roots, pins, carry, pip_args)
    manifest = up_to_date(out, key)
    if manifest:
        say(f"{out}/manifest.json is up to date ({len(manifest['packages'])} packages, "
            f"{len(manifest['archives'])} files): nothing to do")
        return manifest
    started = time.perf_counter()
    target = read_target(target_path)
    wheels = Wheels(out / "wheels", target, pip_args)
    say(f"resolving the project's requirements for {target.name} (Python {target.python})...")
    chosen, needs, left_out = resolve(target, roots, wheels, pins, prefer_local=local)
    spare = fallbacks(target, needs, wheels)
    for line in wheels.log:
        say(f"  {line}")
    groups = {"base": [c for c in chosen.values() if not c.name.startswith(HEAVY_PREFIX)],
              "dali": [c for c in chosen.values() if c.name.startswith(HEAVY_PREFIX)]}
    staging = out / "staging"
    removed = 0
    for group, members in groups.items():
        say(f"installing {len(members)} wheel(s) of {group} into {staging / group} and pruning...")
        stage([c.wheel for c in members], staging / group / "site", target)
        removed += prune(staging / group / "site", target)
    for name, spare_wheel in spare.items():
        stage([spare_wheel["wheel"]], staging / "base" / "fallback" / name, target)
    for old in [*out.glob("base.tar.xz*"), *out.glob("dali.tar.xz*")]:
        old.unlink()
    say("packing with xz (a few minutes for DALI)...")
    archives = []
    pack(staging / "base", out / "base.tar.xz")
    base_bytes = (out / "base.tar.xz").stat().st_size
    tree = int((tree_mib if tree_mib is not None else tracked_tree_mib()) * MIB)
    first = carry - base_bytes - tree
    if first < carry // 10:  # a first DALI part of almost nothing: base.tar.xz outgrew the command
        raise KitError(f"base.tar.xz is {base_bytes / MIB:.1f} MiB: it leaves no room in the first command "
                       f"(--part-mib {carry_mib})")
    archives.append({"file": "base.tar.xz", "group": "base", "bytes": base_bytes,
                     "sha256": sha256(out / "base.tar.xz"), "command": 1})
    pack(staging / "dali", out / "dali.tar.xz")
    whole = out / "dali.tar.xz"
    whole_sha, whole_bytes = sha256(whole), whole.stat().st_size
    for index, part in enumerate(split(whole, [first, carry]), start=1):
        archives.append({"file": part.name, "group": "dali", "bytes": part.stat().st_size, "sha256": sha256(part),
                         "command": index})
    whole.unlink()
    commands = [[a["file"] for a in archives if a["command"] == n]
                for n in range(1, max(a["command"] for a in archives) + 1)]
    manifest = {
        "key": key, "built": time.strftime("%Y-%m-%d %H:%M"), "target": target.name, "python": target.python,
        "part_limit_bytes": carry,
        "packages": [{"name": c.name, "version": c.version, "wheel": c.wheel.name, "sha256": sha256(c.wheel),
                      "group": g, "wanted_by": sorted(set(c.wanted_by))}
                     for g, members in groups.items() for c in sorted(members, key=lambda c: c.name)],
        "fallbacks": [{"name": n, "version": f["version"], "wheel": f["wheel"].name, "needs": f["spec"]}
                      for n, f in spare.items()],
        "target_needs": needs, "left_out": left_out, "pruned_bytes": removed,
        "archives": archives, "dali_archive": {"sha256": whole_sha, "bytes": whole_bytes},
        "commands": [["gpu-kit/manifest.json", *[f"gpu-kit/{f}" for f in files]] for files in commands],
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    say(describe(manifest, time.perf_counter() - started))
    return manifest


def tracked_tree_mib() -> float:
    """What the working tree weighs (its tracked files): it travels with every command."""
    files = subprocess.run(["git", "-C", str(PROJECT), "ls-files", "-z"], capture_output=True).stdout.split(b"\0")
    return sum((PROJECT / f.decode()).stat().st_size for f in files if f and (PROJECT / f.decode()).is_file()) / MIB


def describe(manifest: dict, seconds: float | None = None) -> str:
    lines = [f"gpu-kit for {manifest['target']} (Python {manifest['python']}): {len(manifest['packages'])} packages "
             f"+ {len(manifest['fallbacks'])} fall-back(s), pruned {manifest['pruned_bytes'] / MIB:.0f} MiB"
             + (f", built in {seconds:.0f} s" if seconds is not None else "")]
    for n, files in enumerate(manifest["commands"], start=1):
        sizes = {a["file"]: a["bytes"] for a in manifest["archives"]}
        total = sum(sizes.get(Path(f).name, 0) for f in files)
        lines.append(f"  command {n} carries {', '.join(files)} ({total / MIB:.1f} MiB)")
    lines.append("  left out: " + ", ".join(f"{k} ({v})" for k, v in manifest["left_out"].items()))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.gpu_check.kit", description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", type=Path, default=TARGETS / "py312-torch2.11.txt",
                        help="the target's package list")
    parser.add_argument("--out", type=Path, default=PROJECT / "gpu-kit", help="the kit's folder (git-ignored)")
    parser.add_argument("--part-mib", type=float, default=60, help="the most one command carries of the kit")
    parser.add_argument("--pip-arg", action="append", default=[], help="passed to pip (e.g. --no-index)")
    args = parser.parse_args(argv)
    try:
        build(args.target, args.out, args.part_mib, args.pip_arg)
    except KitError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
