"""``make gpu-kit`` (``python -m trainer.gpu_check.kit``): the packages a GPU machine without network lacks.

Run here, where the package index is reachable. Reads the target machine's package list
(``targets/h200.txt``: its Python, its wheel platforms, the packages it has), walks the project's
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
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import Version

PROJECT = Path(__file__).resolve().parents[2]
TARGETS = Path(__file__).resolve().parent / "targets"
MIB = 2**20
# DALI's needs for image formats this project never reads (JPEG and PNG only): JPEG 2000, TIFF, and nvCOMP's
# compressed inputs. DALI loads them on demand; without them it decodes JPEG (nvJPEG) and PNG as before.
NOT_NEEDED = {"nvidia-libnvcomp-cu13": "nvCOMP (compressed numpy inputs): not used",
              "nvidia-nvjpeg2k-cu13": "JPEG 2000 decoding: ImageNet and MNIST are JPEG and PNG",
              "nvidia-nvtiff-cu13": "TIFF decoding: ImageNet and MNIST are JPEG and PNG"}
# The image's own libraries (tensorboard, onnx, grpcio) are built against its protobuf: report, never replace.
NEVER_REPLACE = {"protobuf"}
HEAVY_PREFIX = "nvidia-"  # NVIDIA's libraries travel in the DALI parts, the rest in base.tar.xz


class KitError(RuntimeError):
    """The kit cannot be built as asked (a package missing from the index, a conflict); the message says which."""


@dataclass
class Target:
    """A machine's Python: its version, the wheel platforms it takes, and its packages (name -> version or None)."""
    name: str
    python: str
    platforms: list[str]
    packages: dict[str, str | None]

    def marker_environment(self) -> dict[str, str]:
        env = default_environment()
        full = self.python if self.python.count(".") == 2 else f"{self.python}.0"
        env.update(python_version=".".join(self.python.split(".")[:2]), python_full_version=full,
                   implementation_name="cpython", platform_python_implementation="CPython", sys_platform="linux",
                   platform_system="Linux", platform_machine="x86_64", os_name="posix", implementation_version=full)
        return env

    @property
    def abi(self) -> str:  # "312"
        return "".join(self.python.split(".")[:2])


def read_target(path: Path) -> Target:
    """Reads a target file (``targets/h200.txt``): ``python:``, ``platforms:`` and one package a line."""
    python, platforms, packages = None, [], {}
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("python:"):
            python = line.split(":", 1)[1].strip()
        elif line.startswith("platforms:"):
            platforms = line.split(":", 1)[1].split()
        else:
            name, _, version = line.partition("==")
            packages[canonicalize_name(name.strip())] = version.strip() or None
    if not python or not platforms:
        raise KitError(f"{path}: needs a 'python: X.Y' and a 'platforms: ...' line")
    return Target(path.stem, python, platforms, packages)


def project_requirements(pyproject: Path = PROJECT / "pyproject.toml") -> list[Requirement]:
    """The project's requirements as installed for the GPU check: its dependencies and its test and export extras."""
    project = tomllib.loads(pyproject.read_text())["project"]
    lines = [*project["dependencies"], *project.get("optional-dependencies", {}).get("test", []),
             *project.get("optional-dependencies", {}).get("export", [])]
    return [Requirement(line) for line in lines]


def read_pins(constraints: Path = PROJECT / "constraints.txt") -> dict[str, str]:
    pins = {}
    for raw in constraints.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[canonicalize_name(name.strip())] = version.strip()
    return pins


def local_version(name: str) -> str | None:
    """The version this environment (the project's, tested by CI) has of a package, if any."""
    import importlib.metadata

    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def wheel_metadata(wheel: Path) -> tuple[str, str, list[Requirement]]:
    """A wheel's canonical name, version and requirements (``Requires-Dist``)."""
    with zipfile.ZipFile(wheel) as z:
        meta = next(n for n in z.namelist() if re.fullmatch(r"[^/]+\.dist-info/METADATA", n))
        text = z.read(meta).decode()
    fields = [line.split(":", 1) for line in text.split("\n\n", 1)[0].splitlines() if ":" in line]
    name = next(v.strip() for k, v in fields if k == "Name")
    version = next(v.strip() for k, v in fields if k == "Version")
    return canonicalize_name(name), version, [Requirement(v.strip()) for k, v in fields if k == "Requires-Dist"]


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(4 * MIB), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class Wheels:
    """Wheels for the target's Python, fetched once into ``folder`` (pip download; pip wheel for a source-only one)."""
    folder: Path
    target: Target
    pip_args: list[str] = field(default_factory=list)  # e.g. --no-index --find-links DIR (the suite's stand-in)
    log: list[str] = field(default_factory=list)

    def _cached(self, name: str, spec: SpecifierSet) -> Path | None:
        found = []
        for wheel in self.folder.glob("*.whl"):
            wname, version, _, tags = parse_wheel_filename(wheel.name)
            if canonicalize_name(wname) == name and spec.contains(version, prereleases=True) and self._fits(tags):
                found.append((version, wheel))
        return max(found)[1] if found else None

    def _fits(self, tags) -> bool:
        for tag in tags:
            python_ok = tag.interpreter in ("py3", f"cp{self.target.abi}") or tag.interpreter.startswith("py3")
            abi_ok = tag.abi in ("none", "abi3", f"cp{self.target.abi}")
            platform_ok = tag.platform == "any" or tag.platform in self.target.platforms
            if python_ok and abi_ok and platform_ok:
                return True
        return False

    def fetch(self, name: str, spec: SpecifierSet) -> Path:
        """The newest cached wheel of ``name`` within ``spec``, else one fetched for the target."""
        cached = self._cached(name, spec)
        if cached:
            return cached
        self.folder.mkdir(parents=True, exist_ok=True)
        wanted = f"{name}{spec}"
        tags = ["--python-version", self.target.python, "--implementation", "cp",
                *[f"--platform={p}" for p in self.target.platforms]]
        download = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q",
                    "--disable-pip-version-check", "-d", str(self.folder), *tags, *self.pip_args, wanted]
        done = subprocess.run(download, capture_output=True, text=True)
        if done.returncode != 0:  # published as source only (antlr4-python3-runtime): build the wheel here
            build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-binary=:all:", "-q",
                     "--disable-pip-version-check", "-w", str(self.folder), *self.pip_args, wanted]
            built = subprocess.run(build, capture_output=True, text=True)
            if built.returncode != 0:
                raise KitError(f"no wheel of {wanted} for Python {self.target.python} on {self.target.platforms[0]}, "
                               f"and building one failed:\n{done.stderr.strip()}\n{built.stderr.strip()}")
            wheel = self._cached(name, spec)
            if wheel is None or not self._fits(parse_wheel_filename(wheel.name)[3]):
                raise KitError(f"{wanted} builds only a wheel for this machine's Python, not the target's")
            self.log.append(f"built {wheel.name} from its source distribution")
            return wheel
        wheel = self._cached(name, spec)
        if wheel is None:
            raise KitError(f"pip downloaded {wanted} but no fitting wheel is in {self.folder}")
        self.log.append(f"fetched {wheel.name}")
        return wheel


@dataclass
class Chosen:
    name: str
    version: str
    wheel: Path
    requires: list[Requirement]
    wanted_by: list[str]
    extras: set[str] = field(default_factory=set)


def resolve(target: Target, roots: list[Requirement], wheels: Wheels, pins: dict[str, str],
            prefer_local: bool = True) -> tuple[dict[str, Chosen], dict[str, list[str]], dict[str, str]]:
    """The packages the target lacks for ``roots``, walked through the wheels' own requirements.

    The version of each is the constraints' pin, else this environment's (what CI tests), else the newest
    that fits. Returns the chosen packages, what they need of the target's own packages (name -> the
    specifiers, with who asks), and what was left out on purpose (``NOT_NEEDED``).
    """
    env = target.marker_environment()
    chosen: dict[str, Chosen] = {}
    needs: dict[str, list[str]] = {}
    left_out: dict[str, str] = {}
    queue: list[tuple[Requirement, str]] = [(r, "convnet-classics") for r in roots
                                            if r.marker is None or r.marker.evaluate({**env, "extra": ""})]
    while queue:
        req, asker = queue.pop(0)
        name = canonicalize_name(req.name)
        if name in target.packages:
            needs.setdefault(name, []).append(f"{req.specifier or 'any'} ({asker})")
            continue
        if name in NOT_NEEDED:
            left_out[name] = NOT_NEEDED[name]
            continue
        if name in chosen:
            if not req.specifier.contains(chosen[name].version, prereleases=True):
                raise KitError(f"{asker} needs {req}, but {name} {chosen[name].version} was chosen for "
                               f"{', '.join(chosen[name].wanted_by)}")
            chosen[name].wanted_by.append(asker)
            new_extras = set(req.extras) - chosen[name].extras
            if not new_extras:
                continue
            chosen[name].extras |= new_extras
            requires = [r for r in chosen[name].requires if r.marker and not r.marker.evaluate({**env, "extra": ""})]
        else:
            version = pins.get(name) or (local_version(name) if prefer_local else None)
            spec = SpecifierSet(f"=={version}") if version and req.specifier.contains(version, prereleases=True) \
                else req.specifier
            wheel = wheels.fetch(name, spec)
            _, wversion, requires = wheel_metadata(wheel)
            chosen[name] = Chosen(name, wversion, wheel, requires, [asker], set(req.extras))
            new_extras = {""} | set(req.extras)
        for r in requires:  # a requirement of an extra counts when that extra was asked for
            if r.marker is None or any(r.marker.evaluate({**env, "extra": e}) for e in new_extras):
                queue.append((r, name))
    return chosen, needs, left_out


def fallbacks(target: Target, needs: dict[str, list[str]], wheels: Wheels) -> dict[str, dict]:
    """For each target package of unknown version that the kit's packages constrain: a pure-Python wheel that
    satisfies every constraint, used there only when the target's own does not (never for ``NEVER_REPLACE``)."""
    chosen = {}
    for name, asks in sorted(needs.items()):
        specs = [a.split(" (")[0] for a in asks if not a.startswith("any") and not a.endswith("(convnet-classics)")]
        if not specs or target.packages.get(name) or name in NEVER_REPLACE:
            continue
        spec = SpecifierSet(",".join(specs))
        try:
            wheel = wheels.fetch(name, spec)
        except KitError:
            continue
        if not wheel.name.endswith("-none-any.whl"):
            continue  # an extension module's replacement could break the image's own libraries: report only
        chosen[name] = {"version": wheel_metadata(wheel)[1], "wheel": wheel, "spec": str(spec)}
    return chosen


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
    parser = argparse.ArgumentParser(prog="python -m trainer.gpu_check.kit", description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", type=Path, default=TARGETS / "h200.txt", help="the target's package list")
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
