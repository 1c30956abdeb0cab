"""What the kernel tells us about processes and files: CPU time and page-cache residency."""

from __future__ import annotations

import ctypes
import mmap
import os
import time
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process so far (from /proc/<pid>/stat)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    # Field 2 (the command) may hold spaces and parentheses: split after the last ')'.
    fields = text[text.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / CLOCK_TICKS


def total_cpu_seconds(pids: list[int]) -> float:
    """Summed CPU time of several processes (those that exited count as 0)."""
    total = 0.0
    for pid in pids:
        try:
            total += cpu_seconds(pid)
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def children(pid: int) -> list[int]:
    """Direct child processes of ``pid``."""
    try:
        return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []


def page_cache_fraction(path: Path) -> float | None:
    """Share of the file's pages held in the page cache (mincore), or None if unknown."""
    try:
        size = path.stat().st_size
        if size == 0:
            return None
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mmap.restype = ctypes.c_void_p
        libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
        libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
        fd = os.open(path, os.O_RDONLY)
        try:
            address = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        finally:
            os.close(fd)
        if address in (None, ctypes.c_void_p(-1).value):
            return None
        try:
            pages = (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE
            vector = (ctypes.c_ubyte * pages)()
            if libc.mincore(address, size, vector) != 0:
                return None
            return round(sum(byte & 1 for byte in vector) / pages, 3)
        finally:
            libc.munmap(address, size)
    except (OSError, AttributeError):
        return None


def fsync_path(path: Path) -> None:
    """Flush one file's data to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _process_tree(root: int) -> list[int]:
    found, pending = [], [root]
    while pending and len(found) < 10_000:  # bounded walk
        pid = pending.pop()
        found.append(pid)
        pending += children(pid)
    return found


def _own_cpu_seconds() -> float:
    """CPU of this process, its descendants, and descendants already reaped (cutime/cstime)."""
    total = 0
    for pid in _process_tree(os.getpid()):
        try:
            text = Path(f"/proc/{pid}/stat").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        fields = text[text.rindex(")") + 2 :].split()
        total += sum(int(value) for value in fields[11:15])
    return total / CLOCK_TICKS


def _machine_cpu_seconds() -> float:
    """Busy CPU seconds of the whole machine since boot, summed over cores (/proc/stat)."""
    values = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = values[:8]
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


class CpuWatch:
    """Machine-wide CPU use over a span, split into this benchmark's and everyone else's.

    Latency figures are only meaningful on an otherwise idle machine; this says whether it was.
    """

    def __init__(self) -> None:
        self._start = (time.monotonic(), _machine_cpu_seconds(), _own_cpu_seconds())

    def stop(self) -> dict:
        """Percent of one core used by the benchmark and by other processes since the start."""
        began, machine, own = self._start
        wall = max(time.monotonic() - began, 1e-6)
        machine_used = _machine_cpu_seconds() - machine
        own_used = _own_cpu_seconds() - own
        return {
            "seconds": round(wall, 1),
            "bench_percent_of_core": round(100 * own_used / wall, 1),
            "others_percent_of_core": round(100 * max(machine_used - own_used, 0.0) / wall, 1),
        }
