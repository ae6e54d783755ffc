"""What the benchmarks record about the machine they ran on (shared by the bench scripts)."""

from __future__ import annotations

import subprocess


def uptime() -> str:
    """`uptime`'s line (load averages): the machine is shared, so every result records it."""
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
