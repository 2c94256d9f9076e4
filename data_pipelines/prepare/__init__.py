"""``python -m data_pipelines.prepare imagenet|resize|mnist``: data sets into the folder layout the trainer reads.

Each command writes only a folder it creates (or an empty one, or its own earlier output, to
resume) and marks it with a manifest (``data_pipelines.manifest``); its sources are only read.
"""


def written_now(counts: dict[str, int], totals: dict[str, int]) -> str:
    """What a run of a prepare command wrote, in words that are true for a fresh folder and a resumed one:
    ``counts`` written now and ``totals`` in the folder, per kind (``{"train images": 60000, ...}``)."""
    listed = " and ".join(f"{counts[k]:,} {k}" for k in counts)
    if all(counts[k] == totals[k] for k in counts):
        return f"{listed} written"
    if not any(counts.values()):
        return "complete already (an earlier run wrote it): nothing written now"
    return f"{listed} written now; the rest of the {' and '.join(f'{totals[k]:,} {k}' for k in totals)} were there " \
           f"from an earlier, interrupted run"
