"""A checkpoint file's first checks, without torch: ``python -m trainer ckpt_path=notes.txt`` is refused in a
fraction of a second instead of after torch and Lightning load (``checkpoints.load_checkpoint`` runs them too)."""

from pathlib import Path


class CheckpointError(ValueError):
    """A checkpoint that cannot be used for this run: missing, unsafe, or of another model."""


def check_checkpoint_file(path) -> Path:
    """The path, checked to be a file in ``torch.save``'s format (a zip archive).

    Raises:
        CheckpointError: one line naming the file and what is wrong: missing, a folder, empty, text or another
            format.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        inside = sorted(p.name for p in path.glob("*.ckpt"))[:3]
        hint = f" (it holds {', '.join(inside)})" if inside else ""
        raise CheckpointError(f"{path} is a folder, not a checkpoint file{hint}; give a .ckpt file, e.g. "
                              f"<run folder>/checkpoints/last.ckpt")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    with open(path, "rb") as f:
        head = f.read(4)
    if head != b"PK\x03\x04":  # torch.save writes a zip archive
        what = "it is empty (0 bytes)" if not head else "it is not the zip archive torch.save writes" + (
            " (it begins with text)" if head.isascii() and head.decode("ascii").isprintable() else "")
        raise CheckpointError(f"{path} is not a checkpoint: {what}. Give a .ckpt file of a run, e.g. "
                              f"<run folder>/checkpoints/last.ckpt or best.ckpt")
    return path
