"""Tools run from the checkout, not installed with the package: what the project's own work needs beside the trainer.

    gpu_check/    every check that needs a GPU, packed for a GPU machine without network (``make gpu-kit``,
                  ``python3 -m tools.gpu_check``; docs/speed.md, "Measuring on a GPU machine")
    kill_loop.py  ``kill -9`` (or SIGTERM, Ctrl-C) at random moments of one run, each resumed, against a run never
                  stopped (docs/reliability.md)
    sdlm_lab.py   LeNet-5's SDLM on the real MNIST in a bare PyTorch loop, one setting at a time
                  (docs/reproducing.md)

They import ``trainer``'s public pieces (the project's path, the driver check); nothing in ``trainer``,
``models`` or ``data_pipelines`` imports them.
"""
