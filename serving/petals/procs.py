"""Process-tree handling for PETALS servers (standard library only).

A PETALS server is a tree: the main process, its DHT and handler processes, two
``p2pd`` daemons and a ``torch_shm_manager`` that calls ``setsid`` (so killing the
process group is not enough).  SIGINT does not stop a server in reasonable time and
SIGTERM to the main PID alone orphans the rest, so we signal every process of the tree.
"""

from __future__ import annotations

import glob
import os
import signal
import subprocess
import time
from typing import Self


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    return children


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (parents first)."""
    children = _children_map()
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def running_tree(proc: subprocess.Popen) -> set[int]:
    """The pids of ``proc``'s tree while it runs; none once it has exited (its pid may be reused)."""
    return set(process_tree(proc.pid)) if proc.poll() is None else set()


def reap(proc: subprocess.Popen, timeout_s: float = 5.0) -> None:
    """Collect ``proc``'s exit after its tree was signalled; one still running past ``timeout_s`` is left."""
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        pass


class StartStop:
    """``with thing as t``: ``start()`` on entry, ``stop()`` on exit.

    A start that fails half way (a server that never got ready, a port never opened) is
    stopped too, so the processes it already launched are not left behind.
    """

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> object:
        raise NotImplementedError

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()


def stop_process(proc: subprocess.Popen, timeout_s: float = 10.0) -> None:
    """SIGTERM one process (not its tree), SIGKILL it if it outlives ``timeout_s``, and collect its exit."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except OSError:
        return False


def terminate_tree(pids: list[int], timeout_s: float = 15.0) -> list[int]:
    """SIGTERM every process in ``pids``; SIGKILL what is left after ``timeout_s``.

    Returns the pids that had to be killed.  Zombies of our own children are reaped by
    the caller's ``Popen.wait``.
    """
    for p in pids:
        try:
            os.kill(p, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.1)
    killed = [p for p in pids if alive(p)]
    for p in killed:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return killed


def leftover_files(pids: list[int], sockets_before: set[str]) -> list[str]:
    """Files a PETALS tree leaves behind when killed: p2pd sockets and torch shared memory."""
    files = [s for s in glob.glob("/tmp/hivemind-p2p*.sock") if s not in sockets_before]
    for p in pids:
        files += glob.glob(f"/dev/shm/torch_{p}_*")
    return files


def remove_files(paths: list[str]) -> None:
    for path in paths:
        try:
            os.unlink(path)
        except OSError:
            pass


def p2p_sockets() -> set[str]:
    return set(glob.glob("/tmp/hivemind-p2p*.sock"))


def torch_shm_files() -> set[str]:
    return set(glob.glob("/dev/shm/torch_*"))


def stale_torch_shm(before: set[str]) -> list[str]:
    """torch shared-memory files made since ``before`` whose creating process is gone.

    Some PETALS worker processes start after a tree was recorded (and the client's too), so the
    per-pid sweep misses their files; a file whose pid no longer exists is garbage.
    """
    out = []
    for path in torch_shm_files() - before:
        try:
            pid = int(os.path.basename(path).split("_")[1])
        except (IndexError, ValueError):
            continue
        if not os.path.exists(f"/proc/{pid}"):
            out.append(path)
    return out
