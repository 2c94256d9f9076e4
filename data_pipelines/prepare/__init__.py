"""``python -m data_pipelines.prepare imagenet|resize|mnist``: data sets into the folder layout the trainer reads.

Each command writes only a folder it creates (or an empty one, or its own earlier output, to
resume) and marks it with a manifest (``data_pipelines.manifest``); its sources are only read.
"""
