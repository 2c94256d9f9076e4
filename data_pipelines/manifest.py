"""Which data folders this project made: the manifest it writes into each, and the rule that follows.

No command here deletes or writes into a folder it did not create. Every folder a command makes
(``prepare``'s outputs, the embedded digits, the benchmark's JPEGs) holds ``convnet-classics.json``:
what made it and how. A command writes only into a folder that does not exist yet, an empty one,
or one whose manifest says the same command made it (to resume); anything else is refused with a
message, before a byte is written. Folders a user points at (``data.root``, ``verify ROOT``,
``bench --data``, ``prepare --source``) are only read.
"""

import datetime
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from .layout import DataConfigError

MANIFEST = "convnet-classics.json"


class NotOursError(DataConfigError):
    """A folder a command would write into, but which this project did not create."""


def read_manifest(folder: str | Path) -> dict | None:
    """The manifest of a folder this project made, or None."""
    path = Path(folder).expanduser() / MANIFEST
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def write_manifest(folder: Path, manifest: dict) -> None:
    """Writes the manifest atomically (a reader never sees half of it)."""
    tmp = folder / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, folder / MANIFEST)


def claim(folder: str | Path, kind: str, option: str = "--out", **details) -> dict:
    """Makes ``folder`` this command's output folder, or takes it back to resume; returns its manifest.

    Args:
        kind: what the folder holds (``imagenet``, ``resized``, ``mnist``, ...): a folder made for
            another kind is refused too.
        option: how the user named the folder, for the message.
        details: how the output is made (recorded; a folder made with other settings is refused).

    Raises:
        NotOursError: the folder exists, is not empty and was not made by this command with these settings.
    """
    folder = Path(folder).expanduser()
    manifest = read_manifest(folder)
    if manifest is None:
        if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
            raise NotOursError(f"{option} {folder} already exists and was not made by this command (it has no "
                               f"{MANIFEST}); nothing was written. Give a new or empty folder")
        folder.mkdir(parents=True, exist_ok=True)
        manifest = {"kind": kind, **details, "complete": False,
                    "created": datetime.datetime.now().isoformat(timespec="seconds")}
        write_manifest(folder, manifest)
        return manifest
    theirs = {k: manifest.get(k) for k in ("kind", *details)}
    if theirs != {"kind": kind, **details}:
        raise NotOursError(f"{option} {folder} was made by another command or with other settings ({theirs}, "
                           f"this one: {({'kind': kind, **details})}); nothing was written. Give a new folder")
    return manifest


def mark_complete(folder: str | Path, **more) -> None:
    """Records in the manifest that the folder is finished (and ``more`` facts about it)."""
    folder = Path(folder).expanduser()
    write_manifest(folder, {**(read_manifest(folder) or {}), **more, "complete": True})


def build_once(folder: str | Path, kind: str, write: Callable[[Path], dict], option: str = "the folder") -> Path:
    """A cache folder written once, whole: ``write(tmp)`` fills a temporary folder beside ``folder``,
    which is renamed into place (over ``folder`` when it is an empty folder), so an interrupted build leaves
    nothing half-written behind.

    Returns ``folder`` at once when this project already made it.

    Raises:
        NotOursError: ``folder`` exists and is not a finished ``kind`` folder of this project's.
    """
    folder = Path(folder).expanduser()
    manifest = read_manifest(folder)
    if manifest is not None and manifest.get("kind") == kind and manifest.get("complete"):
        return folder
    if folder.exists() and not (folder.is_dir() and not any(folder.iterdir())):  # new or empty: written into
        raise NotOursError(f"{option} {folder} exists but is not the {kind} folder this project writes (no complete "
                           f"{MANIFEST} of kind {kind}); it was left as it is. Choose another folder, or move "
                           f"this one away")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        facts = write(tmp)
        write_manifest(tmp, {"kind": kind, **facts, "complete": True,
                             "created": datetime.datetime.now().isoformat(timespec="seconds")})
        try:
            os.replace(tmp, folder)
        except OSError:  # another process finished the same build first: keep theirs
            if not (read_manifest(folder) or {}).get("complete"):
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # ours: made just above
        raise
    return folder
