"""Temporary folders of ours, named by the pid of the process that made them.

A folder is removed when its work ends, on any exit but a kill; one that a killed process left is
recognised by its dead pid and removed by the next process that makes a folder of the same kind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def stale(prefix: str) -> list[Path]:
    """The ``prefix<pid>-*`` folders in the temporary directory whose process is dead."""
    found = []
    for folder in Path(tempfile.gettempdir()).glob(f"{prefix}*"):
        pid = folder.name[len(prefix):].split("-")[0]
        if pid.isdigit() and not pid_alive(int(pid)):
            found.append(folder)
    return found


@contextlib.contextmanager
def scratch_folder(prefix: str) -> Iterator[Path]:
    """A new ``prefix<pid>-*`` folder, removed at the end; the stale ones of its kind go first."""
    for folder in stale(prefix):
        shutil.rmtree(folder, ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix=f"{prefix}{os.getpid()}-") as folder:
        yield Path(folder)
