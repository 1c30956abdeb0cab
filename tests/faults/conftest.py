"""Fixtures for fault injection: tmpfs mounts (cleaned up even when a test fails)."""

from __future__ import annotations

import functools
import os
import subprocess
import tempfile
from pathlib import Path

import pytest


@functools.cache
def can_mount() -> bool:
    """Whether this process may mount a tmpfs (root with CAP_SYS_ADMIN, not every container)."""
    if os.geteuid() != 0:
        return False
    with tempfile.TemporaryDirectory() as probe:
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", probe], capture_output=True)
        if mounted.returncode != 0:
            return False
        subprocess.run(["umount", "-l", probe], check=True)
    return True


class Mounts:
    """tmpfs mounts made by one test; every one still mounted is lazily unmounted at teardown."""

    def __init__(self) -> None:
        self.active: list[Path] = []

    @property
    def available(self) -> bool:
        return can_mount()

    def tmpfs(self, path: Path, options: str) -> Path:
        """Mount a tmpfs with ``options`` (e.g. ``ro,size=1m``) on ``path`` (created if missing)."""
        path.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], check=True, capture_output=True)
        self.active.append(path)
        return path

    def unmount(self, path: Path) -> None:
        """Lazily unmount ``path`` (the folder underneath shows again)."""
        subprocess.run(["umount", "-l", str(path)], check=True, capture_output=True)
        self.active.remove(path)

    def unmount_all(self) -> None:
        for path in reversed(self.active):
            subprocess.run(["umount", "-l", str(path)], capture_output=True)
        self.active.clear()


@pytest.fixture
def mounts():
    """Mount tmpfs file systems for one test; all are unmounted afterwards, pass or fail."""
    made = Mounts()
    try:
        yield made
    finally:
        made.unmount_all()


@pytest.fixture(scope="module")
def module_mounts():
    """Like ``mounts``, for module-scoped fixtures."""
    made = Mounts()
    try:
        yield made
    finally:
        made.unmount_all()
