"""Whether the backup folder can be used, in words fit for the Settings page."""

from __future__ import annotations

import os
from pathlib import Path


def folder_problem(backups_dir: Path) -> str | None:
    """Why backups cannot be written to (or listed from) ``backups_dir``; None when it is usable.

    A folder that does not exist yet is fine when it can be created (the first backup does).
    """
    if backups_dir.exists() and not backups_dir.is_dir():
        return "it is a file, not a folder."
    if backups_dir.is_dir():
        if not os.access(backups_dir, os.W_OK | os.X_OK):
            return "the server's user cannot write to it."
        return None
    ancestor = backups_dir.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        return f"it cannot be created: {ancestor} is a file, not a folder."
    if not os.access(ancestor, os.W_OK | os.X_OK):
        return f"it does not exist, and the server's user cannot create it in {ancestor}."
    return None
