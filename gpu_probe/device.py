"""The device being probed: identity, memory, synchronisation and timers.

Every CUDA call is behind ``kind == "cuda"`` so a CPU run never touches the
CUDA runtime (and works on a torch build without CUDA).
"""

from __future__ import annotations

import os
import platform
import time
from dataclasses import asdict, dataclass

import torch

GB = 1e9
CPU_NOTE = ("CPU figures: measured on the host CPU, not on a GPU; times and memory are "
            "not representative of GPU serving.")


@dataclass(frozen=True)
class DeviceInfo:
    kind: str                    # "cuda" | "cpu"
    index: int | None
    name: str
    total_memory_gb: float
    free_memory_gb: float
    compute_capability: str | None
    cpu_threads: int
    torch_version: str
    cuda_version: str | None
    note: str | None

    def to_dict(self) -> dict:
        return asdict(self)


def resolve_device(requested: str = "auto", index: int = 0) -> torch.device:
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("--device cuda requested but torch sees no CUDA device "
                               f"(torch {torch.__version__}); use --device cpu")
        if index >= torch.cuda.device_count():
            raise RuntimeError(f"CUDA device index {index} out of range "
                               f"({torch.cuda.device_count()} devices)")
        return torch.device("cuda", index)
    if requested == "cpu":
        return torch.device("cpu")
    raise ValueError(f"unknown device {requested!r}; use cuda, cpu or auto")


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def _host_memory() -> tuple[float, float]:
    """(total, available) host memory in GB."""
    try:
        info = {}
        with open("/proc/meminfo") as fh:
            for line in fh:
                key, val = line.split(":", 1)
                info[key] = int(val.split()[0]) * 1024
        return info["MemTotal"] / GB, info.get("MemAvailable", info.get("MemFree", 0)) / GB
    except (OSError, KeyError, ValueError):
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        return pages * size / GB, pages * size / GB


def device_info(device: torch.device) -> DeviceInfo:
    if device.type == "cuda":
        idx = device.index if device.index is not None else torch.cuda.current_device()
        props = torch.cuda.get_device_properties(idx)
        free, total = torch.cuda.mem_get_info(idx)
        return DeviceInfo(kind="cuda", index=idx, name=props.name, total_memory_gb=total / GB,
                          free_memory_gb=free / GB, compute_capability=f"{props.major}.{props.minor}",
                          cpu_threads=torch.get_num_threads(), torch_version=torch.__version__,
                          cuda_version=torch.version.cuda, note=None)
    total, free = _host_memory()
    return DeviceInfo(kind="cpu", index=None, name=_cpu_name(), total_memory_gb=total,
                      free_memory_gb=free, compute_capability=None,
                      cpu_threads=torch.get_num_threads(), torch_version=torch.__version__,
                      cuda_version=None, note=CPU_NOTE)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Timer:
    """Times one call: CUDA events on a GPU (GPU-side time, not launch time), perf_counter on CPU."""

    def __init__(self, device: torch.device):
        self.device = device
        self.kind = "cuda_events" if device.type == "cuda" else "perf_counter"

    def time(self, fn) -> float:
        if self.device.type == "cuda":
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            synchronize(self.device)          # nothing queued before the start event
            start.record()
            fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1e3
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0


def free_memory_bytes(device: torch.device) -> float:
    """Memory free for new tensors now: CUDA ``mem_get_info``, else the host's available RAM."""
    if device.type == "cuda":
        return float(torch.cuda.mem_get_info(device)[0])
    return _host_memory()[1] * GB


def memory_allocated(device: torch.device) -> int | None:
    return torch.cuda.memory_allocated(device) if device.type == "cuda" else None


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def max_memory_allocated(device: torch.device) -> int | None:
    return torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None


def empty_cache(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
