"""How busy other processes keep the CPUs this process may run on, from Linux's ``/proc``: the busy ticks of the
CPUs of its affinity mask (``/proc/stat``) less its own and its descendants' (``/proc/<pid>/stat``), so that a
run's own DALI threads and child processes (W&B's writer) are not counted as company."""

import os
import time

TICKS_PER_S = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def readable() -> bool:
    """Whether this system has the ``/proc`` files the load is read from (Linux)."""
    return os.path.exists("/proc/stat") and os.path.exists(f"/proc/{os.getpid()}/task")


def _tree_ticks(pid: int) -> int:
    """CPU ticks of process ``pid``, of its children that ended (cutime, cstime), and of its live descendants."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()  # after the command's name, which may hold spaces
        tasks = os.listdir(f"/proc/{pid}/task")
    except (FileNotFoundError, ProcessLookupError):  # a process that ended meanwhile
        return 0
    ticks = sum(int(x) for x in fields[11:15])  # utime, stime, cutime, cstime
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children") as f:
                children = f.read().split()
        except (FileNotFoundError, ProcessLookupError):  # a thread that ended meanwhile
            continue
        ticks += sum(_tree_ticks(int(child)) for child in children)
    return ticks


class CpuLoad:
    """What other processes do on the CPUs this process may run on (its affinity mask), from ``/proc``."""

    def __init__(self) -> None:
        self.cpus = {f"cpu{cpu}" for cpu in os.sched_getaffinity(0)}
        self.last = self._read()

    def _read(self) -> tuple[float, int, int]:
        """(monotonic seconds, busy ticks of this process's CPUs, ticks of this process and its descendants)."""
        now, busy = time.monotonic(), 0
        with open("/proc/stat") as f:
            for line in f:
                if not line.startswith("cpu"):
                    break
                name, *ticks = line.split()
                if name in self.cpus:  # user nice system idle iowait irq softirq (steal: another machine's)
                    user, nice, system, _, _, irq, softirq = map(int, ticks[:7])
                    busy += user + nice + system + irq + softirq
        return now, busy, _tree_ticks(os.getpid())

    def seconds_since(self) -> float:
        return time.monotonic() - self.last[0]

    def others(self) -> float:
        """The CPUs other processes kept busy, on average, since the last call."""
        then, self.last = self.last, self._read()
        seconds = max(self.last[0] - then[0], 1e-3)
        return max(0.0, (self.last[1] - then[1]) - (self.last[2] - then[2])) / TICKS_PER_S / seconds
