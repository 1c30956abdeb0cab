"""Heavy work (backups, restores, verification) at low CPU and I/O priority, in a thread of its own.

Linux lets an unprivileged process lower a thread's priority but never raise it again
(RLIMIT_NICE is 0 by default), so no thread is lowered in place: each call starts a
thread that lowers itself, does the work and ends. Request and scheduler threads keep
their priority, and threads the work starts inherit the low one. Progress calls are
relayed to the calling thread: the Python code behind them (the run's row in the state
database, under its write lock and the GIL) must not wait for the CPU at nice 19.
"""

from __future__ import annotations

import contextvars
import ctypes
import logging
import os
import platform
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
Relay = Callable[..., None]

NICE = 19
IOPRIO_CLASS_BE = 2
IOPRIO_CLASS_IDLE = 3
IOPRIO_CLASS_SHIFT = 13
IOPRIO_WHO_PROCESS = 1  # given a thread id, the kernel changes that thread only
# The idle class, not best-effort 7: mq-deadline (this host's scheduler) ignores levels
# inside a class, and both mq-deadline (prio_aging_expire) and BFQ serve starved idle
# requests after a while, so a backup under a busy app slows down but still finishes.
IOPRIO_LOW = IOPRIO_CLASS_IDLE << IOPRIO_CLASS_SHIFT
# (ioprio_set, ioprio_get) system call numbers; the glibc has no wrapper for them.
IOPRIO_SYSCALLS = {
    "x86_64": (251, 252),
    "amd64": (251, 252),
    "i386": (289, 290),
    "i686": (289, 290),
    "aarch64": (30, 31),
    "arm64": (30, 31),
    "riscv64": (30, 31),
    "armv7l": (314, 315),
    "ppc64le": (273, 274),
    "s390x": (282, 283),
}


@dataclass(frozen=True)
class ThreadPriority:
    """A thread's nice value and I/O scheduling class and level (None where unknown)."""

    nice: int
    io_class: int | None
    io_level: int | None


class _Cancelled(Exception):
    """The caller stopped waiting: the work ends at its next progress call."""


_DONE = object()


def run_at_low_priority(work: Callable[[Relay], T], *, name: str, report: Relay | None = None) -> T:
    """Run ``work(relay)`` in a new low-priority thread and wait for it; return or raise what it did.

    ``relay(*args)`` calls ``report(*args)`` in the calling thread. If ``report`` raises,
    the work is stopped at its next progress call, waited for, and the error re-raised.
    """
    outbox: queue.SimpleQueue = queue.SimpleQueue()
    cancelled = threading.Event()
    outcome: dict = {}
    context = contextvars.copy_context()  # the app context, for work that looks it up

    def relay(*args) -> None:
        if cancelled.is_set():
            raise _Cancelled()
        outbox.put(args)

    def body() -> None:
        try:
            lower_current_thread()
            outcome["value"] = context.run(work, relay)
        except BaseException as exc:
            outcome["error"] = exc
        finally:
            on_cpu, waiting = cpu_and_wait_seconds()
            # Long waits for a CPU mean the machine was busy: the work yielded, as it should.
            log.info("%s: %.2f s on a CPU, %.2f s waiting for one", name, on_cpu, waiting)
            outbox.put(_DONE)

    worker = threading.Thread(target=body, name=name, daemon=True)
    worker.start()
    try:
        while (item := outbox.get()) is not _DONE:
            if report is not None:
                report(*item)
    except BaseException:
        # The caller's clean-up (temporary files, the backup lock) must not run under live work.
        cancelled.set()
        worker.join()
        raise
    worker.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def lower_current_thread() -> None:
    """Put the calling thread at nice 19 and in the idle I/O class; for good (see the module)."""
    thread_id = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, thread_id, NICE)
    except OSError as exc:
        log.warning("could not lower the CPU priority of thread %d: %s", thread_id, exc)
    numbers = IOPRIO_SYSCALLS.get(platform.machine())
    if numbers is None:
        return
    if _syscall(numbers[0], IOPRIO_WHO_PROCESS, thread_id, IOPRIO_LOW) < 0:
        # e.g. a seccomp filter in a container: the CPU priority still applies.
        log.info("could not lower the I/O priority of thread %d: %s", thread_id, os.strerror(ctypes.get_errno()))


def thread_priority(thread_id: int | None = None) -> ThreadPriority:
    """The nice value and I/O priority of a thread of this process (the calling one by default)."""
    thread_id = thread_id or threading.get_native_id()
    stat = Path(f"/proc/self/task/{thread_id}/stat").read_text()
    nice = int(stat[stat.rindex(")") + 2 :].split()[16])  # field 19 of proc_pid_stat(5)
    numbers = IOPRIO_SYSCALLS.get(platform.machine())
    value = _syscall(numbers[1], IOPRIO_WHO_PROCESS, thread_id) if numbers else -1
    if value < 0:
        return ThreadPriority(nice, None, None)
    return ThreadPriority(nice, value >> IOPRIO_CLASS_SHIFT, value & ((1 << IOPRIO_CLASS_SHIFT) - 1))


def cpu_and_wait_seconds(thread_id: int | None = None) -> tuple[float, float]:
    """Seconds a thread of this process has run on a CPU and waited in a run queue (schedstat)."""
    thread_id = thread_id or threading.get_native_id()
    try:
        on_cpu, waiting, _slices = Path(f"/proc/self/task/{thread_id}/schedstat").read_text().split()
    except (OSError, ValueError):  # a kernel without schedstats
        return 0.0, 0.0
    return int(on_cpu) / 1e9, int(waiting) / 1e9


def _syscall(number: int, *args: int) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.syscall(ctypes.c_long(number), *(ctypes.c_int(arg) for arg in args))
