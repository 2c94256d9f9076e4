"""What the tool does with W&B's files (trainer/results/tracking/)."""

from trainer.results.tracking import run_parts


def test_the_parts_of_a_run_are_its_folders_oldest_first_same_second_starts_included(tmp_path):
    # W&B names a part <mode>-run-<time>-<id>, and adds -1, -2 when a start of the same run falls in the same second
    names = ["offline-run-20261207_083826-0eb39z65", "offline-run-20261207_083826-0eb39z65-1",
             "run-20261207_083000-0eb39z65", "offline-run-20261207_083826-0eb39z651", "offline-run-20261207_083826-x",
             "latest-run"]
    for name in names:
        (tmp_path / name).mkdir()
    assert [p.name for p in run_parts(tmp_path, "0eb39z65")] == [  # by time: the online start came first
        "run-20261207_083000-0eb39z65", "offline-run-20261207_083826-0eb39z65",
        "offline-run-20261207_083826-0eb39z65-1"]


def test_the_run_id_is_read_from_a_part_whatever_its_suffix():
    from trainer.results.tracking import run_id_of

    assert run_id_of("/x/wandb/offline-run-20261207_083826-0eb39z65") == "0eb39z65"
    assert run_id_of("offline-run-20261207_083826-0eb39z65-1") == "0eb39z65"  # not "1"
    assert run_id_of("run-20261207_083826-0eb39z65") == "0eb39z65" and run_id_of("latest-run") is None
