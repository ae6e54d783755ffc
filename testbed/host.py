"""Facts about the machine a measurement ran on, recorded next to its figures (the testbed, the benchmarks)."""

from __future__ import annotations

import subprocess


def uptime() -> str:
    """`uptime`'s line (load averages): the machine is shared, so every result records it."""
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def cpu_steal() -> tuple[int, int]:
    """(steal, total) jiffies from /proc/stat: time the hypervisor gave this virtual machine's CPUs to others."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        return (fields[7] if len(fields) > 7 else 0), sum(fields)
    except (OSError, ValueError):
        return 0, 0


class StealMeter:
    """``with StealMeter() as m: ...`` then ``m.share``: the share of this machine's CPU time the hypervisor
    stole while the block ran (NaN where /proc/stat is missing).  On a shared virtual machine it, more
    than the load average, decides a run's tail latencies, so results record it next to their figures."""

    def __init__(self) -> None:
        self.share = float("nan")
        self._before = cpu_steal()      # so_far() works from here; entering the block restarts it

    def __enter__(self) -> "StealMeter":
        self._before = cpu_steal()
        return self

    def so_far(self) -> float:
        """The share stolen since the block began (the meter keeps running)."""
        after = cpu_steal()
        total = after[1] - self._before[1]
        return (after[0] - self._before[0]) / total if total > 0 else float("nan")

    def __exit__(self, *exc) -> None:
        self.share = self.so_far()
