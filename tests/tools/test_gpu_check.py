"""The GPU check built for the machine we can be lent: the kit's logic on a small stand-in (wheels made here, no
index), its install there, the figures written as they come, and the exit status without a GPU. The real kit
(280 MiB of downloads, minutes of packing) and the whole command sequence are rehearsed by
``python -m tools.gpu_check.rehearsal`` (docs/speed.md, "Measuring on a GPU machine")."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from packaging.requirements import Requirement

from helpers import PROJECT, run_cli
from tools.gpu_check.install import KitInstallError, install
from tools.gpu_check.kit import build


def make_wheel(folder: Path, name: str, version: str, requires=(), payload: bytes = b"") -> Path:
    """A pure-Python wheel of a package ``name`` holding ``VERSION`` (and ``payload`` as a data file)."""
    module = name.replace("-", "_")
    dist = f"{module}-{version}.dist-info"
    files = {f"{module}/__init__.py": f"VERSION = {version!r}\n".encode(),
             f"{dist}/METADATA": ("Metadata-Version: 2.1\nName: {}\nVersion: {}\n{}".format(
                 name, version, "".join(f"Requires-Dist: {r}\n" for r in requires))).encode(),
             f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    if payload:
        files[f"{module}/payload.bin"] = payload
    files[f"{dist}/RECORD"] = "".join(f"{f},,\n" for f in [*files, f"{dist}/RECORD"]).encode()
    wheel = folder / f"{module}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        for path, data in files.items():
            z.writestr(path, data)
    return wheel


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory):
    """A target that has ``present`` (version unknown) and ``protobuf``, and a project that needs ``alpha``: which
    needs ``beta``, a newer ``present``, a newer ``protobuf``, NVIDIA's heavy ``nvidia-fake`` (300 KiB that xz
    cannot shrink) and ``nvidia-libnvcomp-cu13`` (left out: a format the project never reads)."""
    root = tmp_path_factory.mktemp("kit")
    wheels = root / "index"
    wheels.mkdir()
    make_wheel(wheels, "alpha", "1.0", ["beta>=1", "present>=2", "protobuf>=9", "nvidia-fake", "nvidia-libnvcomp-cu13"])
    make_wheel(wheels, "beta", "1.2")
    make_wheel(wheels, "present", "3.0")
    make_wheel(wheels, "nvidia-fake", "1.0", payload=os.urandom(300 * 1024))
    target = root / "target.txt"
    target.write_text("python: 3.12\nplatforms: manylinux_2_28_x86_64\npresent\nprotobuf\n")
    kit = root / "gpu-kit"
    manifest = build(target, kit, carry_mib=0.2, pip_args=["--no-index", "--find-links", str(wheels)], tree_mib=0,
                     say=lambda *a: None, roots=[Requirement("alpha")], pins={})
    return {"root": root, "kit": kit, "manifest": manifest, "target": target, "wheels": wheels}


def test_the_kit_holds_exactly_what_the_target_lacks_in_parts_that_fit_a_command(stand_in):
    kit, manifest = stand_in["kit"], stand_in["manifest"]
    assert {(p["name"], p["version"], p["group"]) for p in manifest["packages"]} == {
        ("alpha", "1.0", "base"), ("beta", "1.2", "base"), ("nvidia-fake", "1.0", "dali")}
    for package in manifest["packages"]:  # the sha256 of the very wheel it was built from
        wheel = kit / "wheels" / package["wheel"]
        assert hashlib.sha256(wheel.read_bytes()).hexdigest() == package["sha256"]
    assert [f["name"] for f in manifest["fallbacks"]] == ["present"]  # pure Python; protobuf is never replaced
    assert manifest["target_needs"]["protobuf"] == [">=9 (alpha)"]
    assert "nvidia-libnvcomp-cu13" in manifest["left_out"]
    limit = manifest["part_limit_bytes"]
    assert all(a["bytes"] <= limit for a in manifest["archives"])
    dali = [a for a in manifest["archives"] if a["group"] == "dali"]
    assert len(dali) >= 2  # 300 KiB of noise does not fit one part of 0.2 MiB
    first = sum(a["bytes"] for a in manifest["archives"] if a["command"] == 1)
    assert first <= limit and manifest["commands"][0][1] == "gpu-kit/base.tar.xz"  # base travels first
    again = []
    build(stand_in["target"], kit, carry_mib=0.2, pip_args=["--no-index", "--find-links", str(stand_in["wheels"])],
          tree_mib=0, say=again.append, roots=[Requirement("alpha")], pins={})
    assert "is up to date" in again[0]  # nothing changed: nothing rebuilt


def test_the_kit_installs_part_by_part_checks_its_parts_and_uses_a_fall_back_only_when_needed(stand_in, tmp_path,
                                                                                             monkeypatch):
    manifest = stand_in["manifest"]
    there = tmp_path / "gpu-kit"  # the machine's copy, filled command by command
    there.mkdir()
    for n, carried in enumerate(manifest["commands"], start=1):
        for path in carried:
            shutil.copy(stand_in["kit"] / Path(path).name, there / Path(path).name)
        result = install(there, say=lambda *a: None)
        assert result["groups"]["base"] == "installed"
        assert (result["groups"]["dali"] == "installed") == (n == len(manifest["commands"]))
    machine = tmp_path / "machine"  # the machine's own, too old, `present`
    (machine / "present-1.0.dist-info").mkdir(parents=True)
    (machine / "present-1.0.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: present\nVersion: 1.0\n")
    (machine / "present").mkdir()
    (machine / "present" / "__init__.py").write_text("VERSION = '1.0'\n")
    probe = ("import alpha, beta, present, nvidia_fake; print(alpha.__file__, present.VERSION, "
             "len(open(nvidia_fake.__file__.replace('__init__.py', 'payload.bin'), 'rb').read()))")
    monkeypatch.syspath_prepend(str(machine))  # as if installed on the machine
    monkeypatch.setenv("PYTHONPATH", str(machine))
    result = install(there, say=lambda *a: None)
    needs = {n["name"]: n for n in result["needs"]}
    assert needs["present"]["machine"] == "1.0" and needs["present"]["used"] == "the kit's 3.0"
    assert not needs["protobuf"]["ok"] and "never replaced" in needs["protobuf"]["used"]
    done = subprocess.run([sys.executable, "-c", probe], env={**os.environ, **result["env"]}, capture_output=True,
                          text=True, check=True)
    where, version, payload = done.stdout.split()
    assert where.startswith(str(there.resolve())) and version == "3.0" and payload == str(300 * 1024)

    part = there / manifest["archives"][-1]["file"]  # carried incompletely
    part.write_bytes(part.read_bytes()[:-10])
    with pytest.raises(KitInstallError, match=f"{part.name} does not match the manifest"):
        install(there, say=lambda *a: None)


def test_without_a_gpu_nothing_is_measured_and_the_exit_status_says_so(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: `make gpu-check` runs the real thing")
    result = run_cli("tools.gpu_check", "--stage", "1", "--out", str(tmp_path / "out"), cwd=tmp_path, timeout=300)
    assert result.returncode == 3, result.stdout[-2000:] + result.stderr[-2000:]
    assert "no CUDA GPU here: nothing ran (exit status 3)" in result.stderr
    report = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    assert report["machine"]["gpus"] == 0 and report["steps"]["no-gpu"]["status"] == "not run"
    assert "no-gpu | not run" in (tmp_path / "out" / "summary.md").read_text()


def test_each_step_is_on_disk_as_soon_as_it_ends(tmp_path):
    from tools.gpu_check.report import Report

    report = Report(tmp_path / "out", tmp_path / "state.json", {"boot": "b", "gpus": 1}, "quick")
    report.record("resnet50", {"status": "measured", "trainer_img_s": 3100.0})
    on_disk = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    assert on_disk["steps"]["resnet50"]["trainer_img_s"] == 3100.0
    later = Report(tmp_path / "out2", tmp_path / "state.json", {"boot": "b", "gpus": 1}, "quick")  # the next command
    assert later.figure("resnet50", "trainer_img_s") == 3100.0 and len(later.data["commands"]) == 2
    fresh = Report(tmp_path / "out3", tmp_path / "state.json", {"boot": "other", "gpus": 1}, "quick")  # another lease
    assert fresh.figure("resnet50", "trainer_img_s") is None


def test_the_kits_installer_runs_on_the_standard_library_alone():
    """It runs on the GPU machine before anything is installed: an interpreter without site-packages (-I -S), the
    checkout alone on its path, imports it."""
    probe = (f"import sys; sys.path.insert(0, {str(PROJECT)!r}); import tools.gpu_check.install as i; "
             f"print(i.__file__)")
    result = subprocess.run([sys.executable, "-I", "-S", "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == str(PROJECT / "tools" / "gpu_check" / "install.py")
