"""Each run owns its folder: claimed before Hydra writes into it, never shared with another run.

Hydra's default folder (``outputs/<model>/<date>_<time>``) has one-second resolution, so runs started in the
same second (array jobs, sweeps, a shell loop) would share it and overwrite each other's checkpoints and
config. A run started on its own therefore claims its folder here, before Hydra starts: it creates the folder
and its ``.hydra/`` exclusively (an atomic ``mkdir``: of two runs, one wins), and takes the next free name
(``<time>-1``, ``-2``, ...) when the name is taken. A folder the user names (``hydra.run.dir=...``) must be new
or empty: an existing run folder is continued only through ``ckpt_path=`` (which keeps its config; see
``resume_in_place`` in ``trainer/__main__.py``) and anything else that is not empty is refused, never written
into. A requeued Slurm job (``SLURM_RESTART_COUNT`` > 0) continues the folder its first start claimed when the
folder's ``.hydra/overrides.yaml`` is this command's.

Processes that a launcher starts together (torchrun's ranks, ``srun`` with several tasks, the processes
Lightning starts for DDP) share the one folder they are given or compute (the Slurm job id); they are not
claimed for here, as none of them can tell whether another already made it.
"""

import os
from pathlib import Path
from typing import Mapping, Sequence

CLAIM = ".hydra"  # Hydra's output_subdir: created exclusively, it is the claim
LOCK = ".lock"  # held (flock) by the start that trains in the folder, for its whole life
MAX_SUFFIX = 1000
# the folder this process claimed, and the outermost folder it made for it (a stop in set-up removes it)
claimed: dict = {}


class RunFolderError(ValueError):
    """A folder this run must not write into; the message names it and what to do instead."""


_held: list[int] = []  # the lock's file descriptor: open for the life of the process


def hold(folder: Path) -> None:
    """This start holds ``folder`` while it lives: another start of the same run (two resumes of one checkpoint)
    is refused meanwhile, as both would train the same steps and log the same validations to one W&B run. An
    advisory lock (``flock``) on ``folder/.lock``, which the system releases when the process ends, however it
    ends (``kill -9`` included); the file stays, empty of meaning until the next start.

    Raises:
        RunFolderError: another process holds it; the message names that process.
    """
    import fcntl
    import socket

    try:
        fd = os.open(folder / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        return  # not writable: check_places names it
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise RunFolderError(f"the run folder {folder} is in use: {holder} is training in it; a second start "
                             f"would train the same steps again and log the same validations twice to its W&B run. "
                             f"Wait for that start to end, or stop it (Ctrl-C, or kill -TERM <pid>: it writes a "
                             f"checkpoint and prints the command that resumes it)") from None
    except OSError:  # a file system without locks: run unguarded, as before
        os.close(fd)
        return
    os.ftruncate(fd, 0)
    os.write(fd, f"process {os.getpid()} on {socket.gethostname()}".encode())
    _held.append(fd)


def launched_alone(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether this process is a run of its own, not one of several processes a launcher started together."""
    if environ.get("RANK") or environ.get("LOCAL_RANK"):  # torchrun; Lightning's DDP children
        return False
    return int(environ.get("SLURM_NTASKS") or 1) <= 1


def _task_overrides(overrides: Sequence[str]) -> list[str]:
    return [o for o in overrides if not o.lstrip("+~").startswith("hydra.")]


def same_command(folder: Path, overrides: Sequence[str]) -> bool:
    """Whether ``folder`` was started by a command with these overrides (``.hydra/overrides.yaml``)."""
    from omegaconf import OmegaConf

    saved = folder / CLAIM / "overrides.yaml"
    try:
        return list(OmegaConf.load(saved)) == _task_overrides(overrides)
    except (OSError, ValueError):
        return False


def _claim(folder: Path) -> bool:
    """Makes ``folder`` this run's: True when it was new or empty and ``folder/.hydra`` was created here."""
    made = next((f for f in reversed([folder, *folder.parents]) if not f.exists()), None)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunFolderError(f"cannot create the run folder {folder}: {e.strerror}. Run from a folder you can write "
                             f"to, or give one with hydra.run.dir=...") from None
    try:
        if any(folder.iterdir()):
            return False
        (folder / CLAIM).mkdir()  # exclusive: of two runs claiming the same empty folder, one wins
        claimed.update(folder=folder, made=made)
    except (FileExistsError, NotADirectoryError):
        return False
    except OSError:  # read-only: permissions, or a read-only mount
        raise RunFolderError(f"the run folder {folder} is read-only: a run writes its config, checkpoints, "
                             f"console.log and W&B files there. Give a folder you can write to with "
                             f"hydra.run.dir=..., or make it writable") from None
    return True


def _requeued(environ: Mapping[str, str]) -> bool:
    return int(environ.get("SLURM_RESTART_COUNT") or 0) > 0


def refusal(folder: Path) -> str:
    """Why a run will not write into ``folder``, and the two ways on."""
    folder_arg = f"hydra.run.dir={folder}"
    if (folder / CLAIM).is_dir() or (folder / "checkpoints").is_dir():
        last = folder / "checkpoints" / "last.ckpt"
        return (f"{folder_arg} is an existing run folder: a new run there would replace its .hydra/config.yaml "
                f"and mix its checkpoints with this one's. To continue that run with its own config: python -m "
                f"trainer ckpt_path={last}; to start a new run, leave out hydra.run.dir (each run gets a folder "
                f"of its own under outputs/) or give a new or empty folder")
    return (f"{folder_arg} is not empty and is not a run folder of this tool; a run writes .hydra/, checkpoints/, "
            f"wandb/ and console.log into its folder and never into one it did not make. Give a new or empty "
            f"folder, or leave out hydra.run.dir (each run gets a folder of its own under outputs/)")


def claim_run_folder(folder: Path, given: bool, overrides: Sequence[str],
                     environ: Mapping[str, str] = os.environ) -> Path:
    """The folder this run owns: ``folder`` itself, or for Hydra's default name the next free ``folder-N``.

    Args:
        folder: the run folder Hydra would use (``hydra.run.dir``, resolved).
        given: whether the user named it (``hydra.run.dir=`` on the command line): then it is the folder or none.
        overrides: this command's overrides (a requeued job continues the folder its own command started).

    Raises:
        RunFolderError: a named folder that is an existing run folder, or a non-empty folder of something else.
    """
    candidates = [folder] if given else [folder, *(folder.with_name(f"{folder.name}-{n}") for n in
                                                     range(1, MAX_SUFFIX))]
    for candidate in candidates:
        if _requeued(environ) and candidate.is_dir() and same_command(candidate, overrides):
            return candidate
        if _claim(candidate):
            return candidate
    if given:
        raise RunFolderError(refusal(folder))
    raise RunFolderError(f"{folder} and its next {MAX_SUFFIX - 1} names are all taken; give hydra.run.dir=...")


def remove_unstarted(run: str | None, subdir: str | None, wandb_part: Path | None) -> str:
    """What a start stopped during set-up created, removed (``__main__``); the words that say so. The run folder
    this start claimed (``claimed``: the folder, or its contents where the user named an empty folder), or for a
    resume in its own folder ``run`` this start's config folder (``subdir``: ``.hydra/resumed-<time>``) and W&B
    part (``wandb_part``, when W&B had started). Nothing else."""
    import logging
    import shutil

    folder = claimed.get("folder") or (Path(run) if run else None)
    for logger in [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]:  # run.log goes with the folder
        for handler in list(getattr(logger, "handlers", [])):
            if folder and isinstance(handler, logging.FileHandler) and \
                    Path(handler.baseFilename).is_relative_to(folder.resolve()):
                logger.removeHandler(handler)
                handler.close()
    if claimed.get("folder") is not None:
        folder, made = claimed["folder"], claimed["made"]  # made: the outermost folder the claim created, or None
        for path in [folder] if made else list(folder.iterdir()):  # a folder the user named was empty
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
        for parent in [p for p in folder.parents if made and p.is_relative_to(made)]:  # made for it, if still empty:
            try:  # another run started in the same second may have its folder beside this one
                parent.rmdir()
            except OSError:
                break
        return (f"; the run folder {folder} it had made was removed" if made else
                f"; what it had written into {folder} was removed")
    if subdir and run and subdir.startswith(f"{CLAIM}/resumed-"):
        for path in (Path(run) / subdir, wandb_part):
            if path is not None and path.is_relative_to(Path(run)):
                shutil.rmtree(path, ignore_errors=True)
        if wandb_part is not None:
            from ..results.tracking import point_links_back

            point_links_back(wandb_part)
        return f"; the run folder {run} holds what it held before (the same command resumes it)"
    return ""
