"""Drive the real ``age`` binary's passphrase prompts, which read /dev/tty, through a pseudo-terminal."""

from __future__ import annotations

import os
import pty
import select
import signal
import time
from pathlib import Path


def run_age_with_passphrase(args: list[str | Path], passphrase: str, timeout: float = 60) -> tuple[int, str]:
    """Run ``age *args``, answering each passphrase prompt; return (exit code, what it wrote to the terminal)."""
    pid, terminal = pty.fork()
    if pid == 0:  # the child: its controlling terminal is the pty, so age prompts there
        try:
            os.execvp("age", ["age", *map(str, args)])
        finally:
            os._exit(127)
    transcript = b""
    answered = 0
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([terminal], [], [], 0.1)
            if not ready:
                continue
            try:
                data = os.read(terminal, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            transcript += data
            # "Enter passphrase", then "Confirm passphrase" when encrypting.
            if transcript.lower().count(b"passphrase:") + transcript.lower().count(b"passphrase (") > answered:
                answered += 1
                os.write(terminal, passphrase.encode() + b"\n")
        else:
            os.kill(pid, signal.SIGKILL)
    finally:
        os.close(terminal)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), transcript.decode(errors="replace")
