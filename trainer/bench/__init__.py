"""``python -m trainer.bench [overrides]``: training throughput of this trainer against a bare PyTorch loop.

Both train the same model with the same optimizer, precision and in-memory synthetic batch
(``data.batch_size`` images at the model's input size): the trainer as a user runs it (the
LightningModule, its metrics, logging every ``trainer.log_every_n_steps``, the progress bar, the
checkpoint and NaN-guard callbacks), the bare loop as ``forward, loss, backward, step, zero_grad``.
After ``--warmup`` steps, ``--steps`` steps are timed, ``--repeats`` times; the median is reported,
with the time from start to the first training step and the peak memory. Both follow the fast path
(``trainer/parallel/fast_path.py``: on a GPU bf16, channels_last, cuDNN autotuning, TF32, fused SGD). It also
reports the model's training FLOPs per image (3x the forward pass that PyTorch's FLOP counter
counts) and, on a GPU whose peak Lightning knows, the model FLOPs utilisation (MFU: achieved FLOP/s
over the GPU's dense peak for the precision). The last line printed is one JSON object with
``trainer_img_s``, ``bare_img_s`` and ``ratio`` (trainer / bare).

A multi-process strategy (``strategy=ddp``, ``two_gpu_split``) runs in every process, each fed
``data.batch_size`` images a step; the first process times its steps and prints; the bare loop is
one process on one device.

    python -m trainer.bench                                  # lenet5, batch 256, 32x32, fp32 on a CPU
    python -m trainer.bench model=resnet18 data.batch_size=32 --steps 10

(The package imports nothing here: ``__main__`` sets OpenMP's wait policy before torch is loaded.)
"""
