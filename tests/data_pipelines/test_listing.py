"""A data set is listed once per job: every process of a multi-process run reads the first one's listing."""

import json
import re

import pytest
from PIL import Image

from data_pipelines.layout import list_dataset, write_usable_list
from helpers import run_cli

# Loaded by every Python process of the run (PYTHONPATH), before anything else: counts the folder listings
# (os.scandir, os.listdir) under the data root and writes them, per process, when the process ends.
COUNTER = '''
import atexit, json, os
_root, _out = os.environ["COUNT_LISTINGS_UNDER"], os.environ["COUNT_LISTINGS_TO"]
_seen = []
def _counting(real):
    def listing(path=".", *args, **kwargs):
        if str(os.fspath(path)).startswith(_root):
            _seen.append(str(os.fspath(path)))
        return real(path, *args, **kwargs)
    return listing
os.scandir, os.listdir = _counting(os.scandir), _counting(os.listdir)
atexit.register(lambda: open(os.path.join(_out, f"{os.getpid()}.json"), "w").write(json.dumps(_seen)))
'''
CLASSES = [f"n{i:02d}" for i in range(4)]


@pytest.fixture
def small_imagenet(tmp_path):
    root = tmp_path / "imagenet"
    for split, count in (("train", 6), ("val", 2)):
        for cls in CLASSES:
            (root / split / cls).mkdir(parents=True)
            for i in range(count):
                Image.new("RGB", (40, 30), (10 * i, 60, 90)).save(root / split / cls / f"{cls}_{i}.JPEG")
    return root


def listings_in_a_two_process_run(tmp_path, root) -> list[list[str]]:
    hooks, counts = tmp_path / "hooks", tmp_path / "counts"
    hooks.mkdir()
    counts.mkdir()
    (hooks / "sitecustomize.py").write_text(COUNTER)
    result = run_cli("trainer", "strategy=ddp", "trainer.devices=2", "data=imagenet", f"data.root={root}",
                     f"data.num_classes={len(CLASSES)}", "data.batch_size=4", "model=lenet5", "trainer.max_epochs=1",
                     "logger=none", "trainer.enable_progress_bar=false", cwd=tmp_path, timeout=600,
                     env={"PYTHONPATH": str(hooks), "COUNT_LISTINGS_UNDER": str(root),
                          "COUNT_LISTINGS_TO": str(counts)})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "lenet5 / ddp / imagenet" in result.stdout
    per_process = [json.loads(p.read_text()) for p in counts.glob("*.json")]
    assert len(per_process) >= 2  # the launching process and the one it started (each a training process)
    return per_process


def test_without_usable_lists_the_tree_is_walked_once_per_job(tmp_path, small_imagenet):
    per_process = listings_in_a_two_process_run(tmp_path, small_imagenet)
    listed = sorted(path for seen in per_process for path in seen)
    folders = sorted([str(small_imagenet / s) for s in ("train", "val")] +
                     [str(small_imagenet / s / c) for s in ("train", "val") for c in CLASSES])
    assert listed == folders  # every folder once, over all the processes together
    assert sum(1 for seen in per_process if seen) == 1  # by one process


def test_with_usable_lists_no_folder_is_listed(tmp_path, small_imagenet):
    listing = list_dataset(small_imagenet)
    for split in ("train", "val"):
        write_usable_list(small_imagenet, split, listing.files[split])
    per_process = listings_in_a_two_process_run(tmp_path, small_imagenet)
    assert [path for seen in per_process for path in seen] == []
    assert list_dataset(small_imagenet).source == "usable lists"


def test_links_that_loop_or_lead_nowhere_and_names_with_line_breaks_are_named_in_one_line(tmp_path, small_imagenet):
    from data_pipelines.layout import DataLayoutError

    train = small_imagenet / "train"
    cases = [  # (the entry made, what the one line says); each removed before the next
        (train / "ring", "ring", f"{train / 'ring'} is a symbolic link that loops (ring)"),
        (train / "up", "..", f"{train / 'up'} is a symbolic link to {small_imagenet}, a folder that holds it: a loop"),
        (train / "n00" / "self.JPEG", "self.JPEG", f"{train / 'n00' / 'self.JPEG'} is a symbolic link that loops"),
        (train / "n00" / "gone.JPEG", "/nowhere/x.JPEG", f"{train / 'n00' / 'gone.JPEG'} is a symbolic link to "
                                                         f"/nowhere/x.JPEG, which does not exist"),
    ]
    for link, target, said in cases:
        link.symlink_to(target)
        with pytest.raises(DataLayoutError, match="^" + re.escape(said)):
            list_dataset(small_imagenet, use_lists=False)
        link.unlink()
    (train / "n00" / "a\nb.JPEG").write_bytes(b"")
    with pytest.raises(DataLayoutError, match=re.escape(repr(str(train / "n00" / "a\nb.JPEG")) + ": its name holds a "
                                                        "line break")):
        list_dataset(small_imagenet, use_lists=False)
    (train / "n00" / "a\nb.JPEG").unlink()
    (train / "n00" / "elsewhere.JPEG").symlink_to(train / "n01" / "n01_0.JPEG")  # a good link is an image
    assert "train/n00/elsewhere.JPEG" in list_dataset(small_imagenet, use_lists=False).files["train"]

    verify = run_cli("data_pipelines.verify", str(train / "n00" / "n00_0.JPEG"), cwd=tmp_path, timeout=120)
    assert verify.returncode == 2 and "Traceback" not in verify.stderr
    assert f"error: data root {train / 'n00' / 'n00_0.JPEG'} is a file, not a folder" in verify.stderr
