"""``python -m data_pipelines.verify ROOT``: decode every image once, report the unusable ones, list the usable.

ImageNet's train set holds a PNG named .JPEG, CMYK JPEGs and grey images (all readable: reported
as notes), and a copied or half-extracted folder may hold truncated or empty files (unusable:
DALI would abort the epoch on them). Each file is fully decoded with Pillow; the usable ones are
listed in ``usable_{train,val}.txt`` in this project's cache (``layout.usable_list``: ROOT itself is
only read), which the training readers then use instead of listing the folders, so a run never
meets a broken file.

Exit status: 0 when every file is usable, 1 when some are not (the lists are written either way),
2 when ROOT does not have the expected layout.
"""

import argparse
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from PIL import Image
from rich.progress import Progress

from .layout import DataLayoutError, list_dataset, usable_list, write_usable_list


def inspect_image(path: str) -> tuple[str, str | None, str | None]:
    """Decodes one file fully.

    Returns:
        ``(path, problem, note)``: ``problem`` says why the file cannot be used (None when it can),
        ``note`` what is unusual about a usable one (None when nothing is).
    """
    if os.path.getsize(path) == 0:
        return path, "empty file", None
    try:
        with Image.open(path) as img:
            img.load()  # the whole image: a truncated file fails here, not at open()
            fmt, mode = img.format, img.mode
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        return path, f"not a readable image ({type(e).__name__}: {e})", None
    notes = []
    if path.lower().endswith((".jpeg", ".jpg")) and fmt != "JPEG":
        notes.append(f"a {fmt} file named {Path(path).suffix}")
    if mode not in ("RGB", "L"):
        notes.append(f"{mode} colour")
    elif mode == "L":
        notes.append("grey")
    return path, None, ", ".join(notes) or None


def verify(root: str | Path, workers: int | None = None) -> dict:
    """Checks every image of ``root/{train,val}`` and writes the usable-image lists.

    Returns:
        ``{"usable": n, "unusable": [(path, problem)], "notes": [(path, note)]}``.

    Raises:
        DataLayoutError: when ``root`` does not have the expected layout.
    """
    root = Path(root).expanduser()
    listing = list_dataset(root, use_lists=False)  # every file in the folders, not an earlier verify's list
    splits = {split: [str(root / r) for r in relative] for split, relative in listing.files.items()}
    report = {"usable": 0, "unusable": [], "notes": []}
    with Progress() as progress, ProcessPoolExecutor(workers or os.cpu_count()) as pool:
        for split, files in splits.items():
            task = progress.add_task(f"decoding {split}", total=len(files))
            usable = []
            for path, problem, note in pool.map(inspect_image, files, chunksize=64):
                progress.advance(task)
                if problem:
                    report["unusable"].append((path, problem))
                    continue
                usable.append(os.path.relpath(path, root))
                if note:
                    report["notes"].append((path, note))
            write_usable_list(root, split, usable)
            report["usable"] += len(usable)
    return report


def note_lines(notes: list[tuple[str, str]], shown: int = 3) -> list[str]:
    """The notes, a line each for the first ``shown`` files of each kind and one line for the rest of that kind
    (a grey-scale data set would otherwise print a line per image)."""
    by_kind: dict[str, list[str]] = {}
    for path, note in notes:
        by_kind.setdefault(note, []).append(path)
    lines = []
    for note, paths in by_kind.items():
        lines += [f"note: {path}: {note} (usable)" for path in paths[:shown]]
        if len(paths) > shown:
            lines.append(f"note: and {len(paths) - shown:,} more images: {note} (usable)")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m data_pipelines.verify", description=__doc__.split("\n\n")[0])
    parser.add_argument("root", help="dataset folder with train/<class>/* and val/<class>/*")
    parser.add_argument("--workers", type=int, default=None, help="decoding processes (default: all cores)")
    args = parser.parse_args(argv)
    try:
        report = verify(args.root, args.workers)
    except DataLayoutError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for path, problem in report["unusable"]:
        print(f"unusable: {path}: {problem}")
    for line in note_lines(report["notes"]):
        print(line)
    root = Path(args.root).expanduser()
    print(f"{report['usable']:,} usable images, {len(report['unusable']):,} unusable, {len(report['notes']):,} "
          f"notes; training reads {usable_list(root, 'train')} and {usable_list(root, 'val')}")
    return 1 if report["unusable"] else 0


if __name__ == "__main__":
    sys.exit(main())
