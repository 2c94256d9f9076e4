"""The wheels a target machine lacks: its package list read, the project's requirements walked through the wheels'
own metadata, each wheel fetched once for the target's Python (``pip download``; ``pip wheel`` for a package
published as source only), and the pure-Python fall-backs for what the kit needs of the target's own packages."""

import hashlib
import re
import subprocess
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import tomllib
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name, parse_wheel_filename

from trainer import PROJECT

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
    """Reads a target file (``targets/py312-torch2.11.txt``): ``python:``, ``platforms:`` and one package a line."""
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


