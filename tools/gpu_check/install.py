"""On the GPU machine: the kit (``make gpu-kit``) installed into ``gpu-kit/installed/``, offline, for its own Python.

Standard library only (the machine has no Hydra, no W&B and no DALI yet). Every part present is checked
against the manifest's sha256 first; ``base.tar.xz`` is unpacked as soon as it is there, DALI once all its
parts have arrived (reassembled and checked as a whole). Then the kit's needs of the machine's own packages
(``target_needs``) are checked: where the machine's version does not satisfy one, the kit's pure-Python
fall-back of it is put ahead of it on the path; where the kit has none (``protobuf``, which the image's
own libraries are built against, is never replaced), the need is reported as unmet. The result is the
environment the check's steps run in: ``PYTHONPATH`` (the kit's folder, the fall-backs used, the project),
``PATH`` (the kit's commands: ``wandb``), ``LD_LIBRARY_PATH`` (the carried NVIDIA libraries: nvJPEG,
nvImageCodec) and everything offline (W&B, Hugging Face, torch hub's cache only).
"""

import hashlib
import importlib.metadata
import json
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

from trainer import PROJECT

# What the check runs with, printed with where each is imported from (the kit's folder or the machine's own)
REPORTED = ["torch", "torchvision", "pytorch_lightning", "torchmetrics", "numpy", "hydra", "omegaconf", "antlr4",
            "wandb", "submitit", "nvidia.dali", "nvidia.nvimgcodec"]
DISTRIBUTIONS = {"torch": "torch", "torchvision": "torchvision", "pytorch_lightning": "pytorch-lightning",
                 "torchmetrics": "torchmetrics", "numpy": "numpy", "hydra": "hydra-core", "omegaconf": "omegaconf",
                 "antlr4": "antlr4-python3-runtime", "wandb": "wandb", "submitit": "submitit",
                 "nvidia.dali": "nvidia-dali-cuda130", "nvidia.nvimgcodec": "nvidia-nvimgcodec-cu13"}


class KitInstallError(RuntimeError):
    """A part that does not match the manifest, or an archive that cannot be unpacked."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _spec_ok(version: str, spec: str) -> bool:
    """Whether ``version`` satisfies a specifier such as ``<5,>=4.8`` (packaging when the machine has it)."""
    try:
        from packaging.specifiers import SpecifierSet

        return SpecifierSet(spec).contains(version, prereleases=True)
    except ImportError:  # pragma: no cover - packaging is on every machine with pip
        return True


def _unpack(archives: list[Path], into: Path) -> None:
    """Unpacks the xz tar that ``archives`` form when joined (one file, or the parts in order)."""
    import lzma

    class Joined:  # the parts read one after another, as one stream
        def __init__(self, paths):
            self.files = [open(p, "rb") for p in paths]

        def read(self, n=-1):
            out = b""
            while self.files and (n < 0 or len(out) < n):
                block = self.files[0].read(-1 if n < 0 else n - len(out))
                if not block:
                    self.files.pop(0).close()
                    continue
                out += block
            return out

    into.mkdir(parents=True, exist_ok=True)
    with lzma.open(Joined(archives)) as stream, tarfile.open(fileobj=stream, mode="r|") as tar:
        tar.extractall(into, filter="data") if hasattr(tarfile, "data_filter") else tar.extractall(into)


def install(kit: Path, say=print) -> dict:
    """Checks and unpacks what of the kit is here; returns what was installed and the environment to run in.

    Raises:
        KitInstallError: a part whose size or sha256 differs from the manifest's (named), or no manifest.
    """
    kit = kit.resolve()  # the steps run in other folders too
    manifest_path = kit / "manifest.json"
    if not manifest_path.is_file():
        raise KitInstallError(f"{manifest_path} is missing: build the kit with `make gpu-kit` and carry "
                              f"gpu-kit/manifest.json with the parts (docs/speed.md, \"Measuring on a GPU machine\")")
    manifest = json.loads(manifest_path.read_text())
    installed = kit / "installed"
    done_marks = installed / ".unpacked"
    done_marks.mkdir(parents=True, exist_ok=True)
    present, missing = [], []
    for archive in manifest["archives"]:
        path = kit / archive["file"]
        if not path.is_file():
            missing.append(archive["file"])
            continue
        if path.stat().st_size != archive["bytes"] or _sha256(path) != archive["sha256"]:
            raise KitInstallError(f"{path} does not match the manifest (size or sha256): carried incompletely, or "
                                  f"from another build of the kit; rebuild with `make gpu-kit` and carry it again")
        present.append(archive["file"])
    groups = {}
    for group in ("base", "dali"):
        members = [a for a in manifest["archives"] if a["group"] == group]
        here = all(a["file"] in present for a in members)
        digest = manifest.get("dali_archive", {}).get("sha256") if group == "dali" else members[0]["sha256"]
        mark = done_marks / f"{group}-{digest[:16]}"
        if here and not mark.exists():
            parts = [kit / a["file"] for a in members]
            if group == "dali":
                joined = hashlib.sha256()
                for part in parts:
                    with open(part, "rb") as f:
                        for block in iter(lambda: f.read(1 << 22), b""):
                            joined.update(block)
                if joined.hexdigest() != manifest["dali_archive"]["sha256"]:
                    raise KitInstallError("the DALI parts joined do not give the archive the manifest names")
            say(f"unpacking {group} ({sum(p.stat().st_size for p in parts) / 2**20:.0f} MiB) into {installed}")
            _unpack(parts, installed)
            mark.touch()
        waiting = ", ".join(a["file"] for a in members if a["file"] not in present)
        groups[group] = "installed" if mark.exists() else f"waiting for {waiting}"
    env, needs = environment(kit, manifest)
    return {"kit": str(kit), "built": manifest.get("built"), "groups": groups, "missing_parts": missing,
            "needs": needs, "env": env}


def environment(kit: Path, manifest: dict) -> tuple[dict[str, str], list[dict]]:
    """The variables the steps run with, and each need of the machine's packages with how it is met."""
    installed = kit.resolve() / "installed"
    site = installed / "site"
    path = [str(site)]
    needs = []
    fallbacks = {f["name"]: f for f in manifest.get("fallbacks", [])}
    for name, asks in sorted(manifest.get("target_needs", {}).items()):
        specs = [a.split(" (")[0] for a in asks if not a.startswith("any") and not a.endswith("(convnet-classics)")]
        try:
            have = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            have = None
        spec = ",".join(specs)
        ok = have is not None and (not spec or _spec_ok(have, spec))
        entry = {"name": name, "machine": have, "needs": spec or "any", "ok": ok}
        if not ok and name in fallbacks and (installed / "fallback" / name).is_dir():
            path.append(str(installed / "fallback" / name))
            entry.update(ok=True, used=f"the kit's {fallbacks[name]['version']}")
        elif not ok:
            entry["used"] = "unmet: " + ("never replaced (the image's own libraries use it)" if name == "protobuf"
                                         else "no fall-back in the kit")
        needs.append(entry)
    libs = sorted({str(p.parent) for p in site.glob("nvidia/*/lib*/*.so*")} |
                  {str(p.parent) for p in site.glob("nvidia/*/*.so*")})
    env = {"PYTHONPATH": os.pathsep.join([*path, str(PROJECT), *filter(None, [os.environ.get("PYTHONPATH")])]),
           "PATH": os.pathsep.join([str(site / "bin"), os.environ.get("PATH", "")]),
           "LD_LIBRARY_PATH": os.pathsep.join([*libs, *filter(None, [os.environ.get("LD_LIBRARY_PATH")])]),
           "WANDB_MODE": "offline", "WANDB_SILENT": "true", "HF_HUB_OFFLINE": "1", "PIP_NO_INDEX": "1",
           "PYTHONDONTWRITEBYTECODE": "1"}
    return env, needs


def versions(env: dict[str, str]) -> list[dict]:
    """What the steps import, each with its version and the folder it comes from (a fresh process, the steps' env)."""
    probe = (
        "import importlib, importlib.metadata as md, json, sys\n"
        f"names = {REPORTED!r}; dists = {DISTRIBUTIONS!r}\n"
        "out = []\n"
        "for n in names:\n"
        "    try:\n"
        "        m = importlib.import_module(n); v = md.version(dists[n])\n"
        "        where = getattr(m, '__file__', None) or str(list(m.__path__)[0])\n"
        "        out.append({'module': n, 'version': v, 'from': where})\n"
        "    except Exception as e:\n"
        "        out.append({'module': n, 'error': f'{type(e).__name__}: {e}'.splitlines()[0][:200]})\n"
        "print(json.dumps(out))\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env={**os.environ, **env},
                          timeout=300)
    lines = [line for line in done.stdout.splitlines() if line.startswith("[")]
    return json.loads(lines[-1]) if lines else [{"module": "*", "error": done.stderr.strip()[-500:]}]


def describe_versions(found: list[dict], kit: Path) -> list[str]:
    inside = str((kit / "installed").resolve())
    lines = []
    for v in found:
        if "error" in v:
            lines.append(f"  {v['module']:<18} not importable: {v['error']}")
        else:
            where = "the kit" if str(Path(v["from"]).resolve()).startswith(inside) else "the machine"
            folder = re.sub(r"/__init__.py$", "", v["from"])
            lines.append(f"  {v['module']:<18} {v['version']:<14} from {where} ({folder})")
    return lines
