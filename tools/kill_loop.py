"""The kill loop: ``kill -9`` (or SIGTERM, or Ctrl-C) at random moments of one run, each followed by a resume,
against a run never killed.

    python tools/kill_loop.py [--kills 10] [--epochs 4] [--seed 0] [--signal KILL|TERM|INT]
                                          [--within 25]
                                          [--work /tmp/kill-loop] [OVERRIDES ...]

A benchmark-style script (minutes on 2 cores), not a CI test. The run is the main job (LeNet-5 on the digits,
W&B offline) with ``checkpoint_every_n_steps=5``; the first kill waits for the first checkpoint (before it
there is nothing to resume), each later one lands at a moment drawn uniformly from the next start's first
25 seconds (``--within``), mid-write included. After the kills the run is resumed to its end. Trainer overrides after
the options go to every start (the modern recipe's options: ``ema.decay=0.9 model.mixup_alpha=0.2 ...``). It checks
and prints: the final weights, and their moving average when the run keeps one (``ema.decay``), against the
uninterrupted run's (largest difference), every epoch's validation in the W&B run
(all its parts, read back with ``wandb leet inspect``), and no checkpoint left unreadable. With ``--signal TERM``
or ``INT`` every stop must also end as ``run/interrupt.py`` says: exit 143 / 130 and one line, "stopped by ...
at global step N" with the checkpoint it wrote (which the next start resumes), or "during set-up" with nothing
left; the figures count each kind of ending. The last line is JSON.
"""

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "trainer", "trainer.enable_progress_bar=false", "checkpoint_every_n_steps=5", *args]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python tools/kill_loop.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0, help="of the kill moments")
    parser.add_argument("--within", type=float, default=25.0, help="seconds after a start the moment is drawn from")
    parser.add_argument("--signal", choices=["KILL", "TERM", "INT"], default="KILL")
    parser.add_argument("--work", type=Path, default=Path("/tmp/kill-loop"))
    parser.add_argument("overrides", nargs="*", help="trainer overrides for every start (key=value)")
    args = parser.parse_args(argv)
    from trainer.results.tracking import validation_history
    from trainer.run.checkpoints import load_checkpoint

    rng = random.Random(args.seed)
    args.work.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%H%M%S")
    whole, killed = args.work / f"whole-{stamp}", args.work / f"killed-{stamp}"
    env = {**os.environ, "WANDB_SILENT": "true"}
    epochs = [f"trainer.max_epochs={args.epochs}", *args.overrides]
    t0 = time.monotonic()
    subprocess.run(command(*epochs, f"hydra.run.dir={whole}"), cwd=args.work, env=env, check=True,
                   capture_output=True)
    print(f"uninterrupted run: {time.monotonic() - t0:.0f} s", flush=True)
    last = killed / "checkpoints" / "last.ckpt"
    kills, endings, sent = [], [], getattr(signal, f"SIG{args.signal}")
    for n in range(args.kills):
        first = not last.exists()
        run = command(*epochs, f"hydra.run.dir={killed}") if first else command(*epochs, f"ckpt_path={last}")
        process = subprocess.Popen(run, cwd=args.work, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        started = time.monotonic()
        if first:  # nothing to resume before the first checkpoint
            while not last.exists() and process.poll() is None:
                time.sleep(0.01)
            wait = rng.uniform(0, 2)
        else:
            wait = rng.uniform(0, args.within)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.01)
        if process.poll() is not None:  # it finished before the moment drawn: nothing to kill
            kills.append({"kill": n + 1, "after_s": None, "finished": True})
            break
        process.send_signal(sent)
        _, err = process.communicate()
        step = load_checkpoint(last)["global_step"] if last.exists() else None
        kills.append({"kill": n + 1, "after_s": round(time.monotonic() - started, 2), "last_ckpt_step": step})
        if sent != signal.SIGKILL:
            kills[-1]["ending"] = ending(err.decode(), process.returncode, sent, step, killed)
            endings.append(kills[-1]["ending"])
        print(f"kill {n + 1}: {kills[-1]['after_s']} s after the start, last.ckpt at step {step}"
              f"{', ' + kills[-1]['ending'] if 'ending' in kills[-1] else ''}", flush=True)
    done = subprocess.run(command(*epochs, f"ckpt_path={last}"), cwd=args.work, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        print(done.stderr[-3000:], file=sys.stderr)
        return 1
    a, b = load_checkpoint(whole / "checkpoints" / "last.ckpt"), load_checkpoint(last)
    worst = max((a["state_dict"][k] - b["state_dict"][k]).abs().max().item() for k in a["state_dict"])
    if "ema_state_dict" in a:  # the weights' moving average too (trainer/run/callbacks/ema.py)
        worst = max(worst, *((a["ema_state_dict"][k] - b["ema_state_dict"][k]).abs().max().item()
                             for k in a["ema_state_dict"]))
    validated = {}
    parts = sorted((killed / "wandb").glob("offline-run-*"))
    for part in parts:
        try:
            validated.update({int(h["epoch"]): h["val/top1_err"] for h in validation_history(part)})
        except subprocess.CalledProcessError:  # a part holding only its header
            pass
    unreadable = []
    for ckpt in killed.rglob("*.ckpt"):
        try:
            load_checkpoint(ckpt)
        except Exception as e:  # noqa: BLE001 - reported, not raised
            unreadable.append(f"{ckpt}: {e}")
    figures = {"kills": len([k for k in kills if k.get("after_s") is not None]), "epochs": args.epochs,
               "overrides": args.overrides, "ema_compared": "ema_state_dict" in a,
               "largest_weight_difference": worst, "weights_equal": worst <= 1e-6,
               "wandb_parts": len(parts), "validated_epochs": sorted(validated),
               "every_epoch_in_wandb": sorted(validated) == list(range(1, args.epochs + 1)),
               "unreadable_checkpoints": unreadable, "kill_moments": kills,
               "endings": {kind: endings.count(kind) for kind in sorted(set(endings))},
               "wall_s": round(time.monotonic() - t0)}
    print(json.dumps(figures))
    clean = all(not kind.startswith("WRONG") for kind in endings)
    return 0 if figures["weights_equal"] and figures["every_epoch_in_wandb"] and not unreadable and clean else 1


def ending(err: str, status: int, sent: int, step: int | None, folder: Path) -> str:
    """How a start stopped by SIGTERM / Ctrl-C ended: the kind of stop its one line names, or ``WRONG: ...``."""
    expected = {signal.SIGTERM: 143, signal.SIGINT: 130}[sent]
    if status != expected:
        return f"WRONG: exit {status}"
    if "Traceback" in err:
        return "WRONG: a traceback"
    stopped = re.search(r"stopped by \S+(?: \(SIGINT\))? at global step (\d+) "
                        r"\((in the validation|in epoch|at the end)", err)
    if stopped:
        if int(stopped.group(1)) != step:
            return f"WRONG: said step {stopped.group(1)}, last.ckpt at {step}"
        return {"in the validation": "in validation", "in epoch": "mid-epoch", "at the end": "at an epoch's end"}[
            stopped.group(2)]
    if "during set-up, before training began" in err:
        return "during set-up"
    if "arrived after training had ended" in err:
        return "after the end"
    return "WRONG: no message"


if __name__ == "__main__":
    sys.exit(main())
