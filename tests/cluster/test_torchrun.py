"""torchrun, as on a cluster without Slurm: one node, two nodes meeting over c10d, a node lost mid-run; and the
Docker image's install."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from helpers import PROJECT
from helpers import free_port as _free_port
from trainer.run.checkpoints import load_checkpoint


def torchrun_node(rank: int, port: int, run: Path, cache: Path, *overrides: str) -> subprocess.Popen:
    """One node's torchrun agent of a 2-node x 2-process DDP run (both nodes on this machine, as on two hosts
    sharing a file system), rendezvous over c10d at 127.0.0.1:``port``."""
    torchrun = Path(sys.executable).with_name("torchrun")
    return subprocess.Popen(
        [str(torchrun), "--nnodes=2", "--nproc-per-node=2", f"--node-rank={rank}", "--rdzv-backend=c10d",
         f"--rdzv-endpoint=127.0.0.1:{port}", "--rdzv-id=two-nodes", "-m", "trainer", "strategy=ddp",
         "trainer.devices=2", "trainer.num_nodes=2", f"hydra.run.dir={run}", "trainer.enable_progress_bar=false",
         *overrides], cwd=run.parent, env={**os.environ, "CONVNET_CACHE": str(cache)},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def test_two_nodes_train_one_run_that_resumes_on_one_node(tmp_path, digits_cache):
    """torchrun on two nodes (two agents, two processes each): one DDP run of 4 processes, one W&B run; its
    checkpoint then resumes under ``torchrun --standalone`` on a single node with two processes."""
    port, run = _free_port(), tmp_path / "run"
    nodes = [torchrun_node(rank, port, run, digits_cache, "trainer.max_epochs=2") for rank in (0, 1)]
    outs = [node.communicate(timeout=600)[0] for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], outs[0][-2000:] + outs[1][-2000:]
    assert "runs on: 4 process(es) = 2 node(s) x 2, one CPU device each (DDPStrategy)" in outs[0]
    assert "global batch 32 = 4 replica(s) x 8" in outs[0] and "lenet5 / ddp / digits" in outs[0]
    assert "val top-1 error (final)" not in outs[1]  # the summary comes from global rank 0 only
    last = run / "checkpoints" / "last.ckpt"
    steps = load_checkpoint(last)["global_step"]
    assert steps == 2 * 45  # 1,437 training digits in global batches of 32: 45 steps an epoch, for all 4 replicas
    (wandb_run,) = (run / "wandb").glob("offline-run-*")

    torchrun = Path(sys.executable).with_name("torchrun")
    one_node = subprocess.run([str(torchrun), "--standalone", "--nproc-per-node=2", "-m", "trainer", "strategy=ddp",
                               "trainer.devices=2", f"ckpt_path={last}", "trainer.max_epochs=3",
                               "schedule.restart_lr=0.01", "trainer.enable_progress_bar=false"],
                              cwd=tmp_path, env={**os.environ, "CONVNET_CACHE": str(digits_cache)},
                              capture_output=True, text=True, timeout=600)
    assert one_node.returncode == 0, one_node.stderr[-3000:]
    out = one_node.stdout + one_node.stderr
    assert "runs on: 2 process(es) = 1 node(s) x 2, one CPU device each (DDPStrategy)" in out
    assert f"resuming from {last} after epoch 2 (global step 90)" in out  # 2 epochs of 45 steps, as the stop said
    assert out.count("val top-1 error (final)") == 1  # one summary, from rank 0
    wandb_id = wandb_run.name.rsplit("-", 1)[1]
    assert f"-{wandb_id}" in out  # the same W&B run goes on
    errors = [float(e) for e in re.findall(r"^epoch \d/3: val top-1 error ([\d.]+) %", out, re.M)]
    assert len(errors) == 1 and errors[0] < 50, out[-2000:]  # DDP over 4, then 2 processes learns (chance: 90 %)


def test_a_lost_node_stops_the_other_with_a_message_and_its_checkpoint_resumes(tmp_path, digits_cache):
    """One node's agent and its processes killed mid-run: the other node's processes stop within seconds (not
    the 10-minute process-group timeout) saying what happened and where the checkpoint is; it resumes."""
    port, run = _free_port(), tmp_path / "run"
    nodes = [torchrun_node(0, port, run, digits_cache, "trainer.max_epochs=30")]  # node 0 hosts the rendezvous
    time.sleep(3)
    nodes.append(torchrun_node(1, port, run, digits_cache, "trainer.max_epochs=30"))
    try:
        last = run / "checkpoints" / "last.ckpt"
        deadline = time.monotonic() + 300
        while not last.exists():
            assert time.monotonic() < deadline and nodes[0].poll() is None, "no checkpoint from the 2-node run"
            time.sleep(0.5)
        for pid in _process_tree(nodes[1].pid):  # the node is lost: its agent and both training processes
            os.kill(pid, signal.SIGKILL)
        lost = time.monotonic()
        out = nodes[0].communicate(timeout=300)[0]
        stopped_after = time.monotonic() - lost
    finally:
        for node in nodes:
            node.kill()
    print(f"node 0 stopped {stopped_after:.1f} s after node 1 was lost")
    assert nodes[0].returncode != 0 and stopped_after < 120
    assert "lost contact with another process of this run" in out
    assert f"its last checkpoint is {last}; start the same command again with ckpt_path={last} to resume" in out
    step = load_checkpoint(last)["global_step"]
    resumed = subprocess.run([sys.executable, "-m", "trainer", "strategy=ddp", "trainer.devices=2", f"ckpt_path={last}",
                              "trainer.max_steps=135", "trainer.enable_progress_bar=false", "logger=none"],
                             cwd=tmp_path, env={**os.environ, "CONVNET_CACHE": str(digits_cache)},
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0 and f"resuming from {last} after epoch" in resumed.stdout, resumed.stderr[-3000:]
    assert step >= 45 and re.search(r"epochs / steps +│ \d+ / 135 ", resumed.stdout)  # went on to step 135


def _process_tree(pid: int) -> list[int]:
    children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [pid, *(p for child in children for p in _process_tree(int(child)))]


def test_dockerfile_installs_the_project_as_the_docs_say():
    dockerfile = (PROJECT / "docker" / "Dockerfile").read_text()
    manual = (PROJECT / "docs" / "cluster.md").read_text()
    assert "make install" in dockerfile and "install: $(STAMP)" in (PROJECT / "Makefile").read_text()
    assert "constraints.txt" in (PROJECT / "Makefile").read_text()  # the pinned versions, the same as CI's
    assert re.search(r"^USER (?!root)\w+", dockerfile, re.M)  # not root
    assert 'ENTRYPOINT ["python", "-m", "trainer"]' in dockerfile
    assert "docker build -f docker/Dockerfile" in manual and "docker run --gpus all" in manual
    ignored = (PROJECT / ".dockerignore").read_text().split()
    assert {".venv", "outputs"} <= set(ignored)
