"""Atomic writes: a reader (or a run killed mid-write) sees the old file or folder or the new one,
never half of one. The data goes to a temporary name beside the target, is flushed to disk, then
renamed over the target.

Permissions: temporary files are created with mode 0o666 and temporary folders with 0o777, so the
kernel applies the process umask exactly as for a plain ``open(path, "w")`` or ``mkdir`` (0644 and
0755 under umask 022). Nothing here reads or changes the umask (``os.umask`` is process-global, and
reading it means setting it, which races with other threads).

Leftovers: a writer killed by ``kill -9`` or a power cut leaves its temporary name behind. Each
writer holds an advisory ``flock`` on its temporary file (for a folder: on a lock file beside it,
``.NAME.lock-TOKEN``) from creation until the rename; the kernel drops the lock when the writer dies,
whatever the signal. Before writing a target, autoscale removes the temporary names *of that target*
that no process holds: a leftover of a dead writer. A live writer's names are never removed, whether
it is this process, another autoscale process, or one on another machine sharing the folder over
NFS (which carries ``flock`` as a byte-range lock; a mount with ``nolock`` does not, and two machines
writing the same target at the same time there could remove each other's temporary file).

Names (TOKEN is ``<pid>-<8 hex>``; the pid is for people reading a folder, not for the check)::

    .NAME.TOKEN.tmp       a file being written by atomic_open
    .NAME.tmp-TOKEN/      a folder being built by atomic_dir
    .NAME.old-TOKEN/      the folder it replaces, between the two renames
    .NAME.lock-TOKEN      held by the atomic_dir writer while either folder exists
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import secrets
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

_FILE_TMP = r"\.{name}\.(?:\d+-[0-9a-f]{{8}}|[a-z0-9_]{{8}})\.tmp"  # ours, or mkstemp's from older versions
_DIR_TMP = r"\.{name}\.(tmp|old|lock)-(\d+-[0-9a-f]{{8}})"


def _create_locked(path_for: Callable[[str], Path]) -> tuple[int, Path, str]:
    """Create a new file at ``path_for(token)`` (mode 0o666 less the umask), locked; return (fd, path, token).

    A cleaner that found the file before we locked it may have removed it as a leftover: then the
    file we hold has no name left and we start again under a new one.
    """
    for _ in range(100):
        token = f"{os.getpid()}-{secrets.token_hex(4)}"
        path = path_for(token)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # blocks only while a cleaner holds it to remove it
            if os.fstat(fd).st_nlink > 0:
                return fd, path, token
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
    raise OSError(f"could not create a temporary file beside {path}")  # pragma: no cover


@contextlib.contextmanager
def _lock_if_unheld(path: Path) -> Iterator[os.stat_result | None]:
    """Lock the file ``path`` without waiting; yield its stat if no one else held it, else None."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:  # gone, a folder, or not ours to write
        yield None
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # held by a live writer
            yield None
            return
        yield os.fstat(fd)  # the lock is held (so no writer can take it) until the caller is done
    finally:
        os.close(fd)


def _same_file(path: Path, st: os.stat_result) -> bool:
    try:
        now = os.stat(path, follow_symlinks=False)
    except OSError:
        return False
    return (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino)


def remove_leftovers(path: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporary files and folders that dead writers of ``path`` left beside it.

    Only names this module makes for ``path`` are considered, and only those no live process holds
    (see the module docstring). Returns the names removed.
    """
    p = Path(path)
    try:
        names = os.listdir(p.parent)
    except OSError:
        return []
    name = re.escape(p.name)
    file_re = re.compile(_FILE_TMP.format(name=name))
    dir_re = re.compile(_DIR_TMP.format(name=name))
    removed: list[Path] = []
    tokens: set[str] = set()
    for entry in names:
        if file_re.fullmatch(entry):
            tmp = p.parent / entry
            with _lock_if_unheld(tmp) as st:
                if st is not None and _same_file(tmp, st):
                    tmp.unlink(missing_ok=True)
                    removed.append(tmp)
        elif m := dir_re.fullmatch(entry):
            tokens.add(m.group(2))
    for token in sorted(tokens):
        lock = p.parent / f".{p.name}.lock-{token}"
        folders = [p.parent / f".{p.name}.{kind}-{token}" for kind in ("tmp", "old")]
        # The writer creates its lock file before its folders and removes it after them, so
        # folders without a lock file have no writer either.
        with _lock_if_unheld(lock) as st:
            if st is None and lock.exists():
                continue  # a live writer holds it
            for folder in folders:
                if folder.is_dir() and not folder.is_symlink():
                    shutil.rmtree(folder, ignore_errors=True)
                    removed.append(folder)
            if st is not None and _same_file(lock, st):
                lock.unlink(missing_ok=True)
                removed.append(lock)
    return removed


@contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """Open a temporary file for writing (``mode`` "w" or "wb"); on success it replaces ``path``.

    Text mode defaults to UTF-8. The new file has the usual permissions (0o666 less the umask). On
    any exception the temporary file is removed and ``path`` is left as it was. Leftovers of earlier
    writers of ``path`` that died mid-write are removed first.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes with mode 'w' or 'wb', not {mode!r}")
    p = Path(path)
    if "b" not in mode:
        kwargs.setdefault("encoding", "utf-8")
    remove_leftovers(p)
    fd, tmp, _ = _create_locked(lambda token: p.parent / f".{p.name}.{token}.tmp")
    try:
        with os.fdopen(fd, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
            os.replace(tmp, p)  # still locked, so no cleaner takes the finished file for a leftover
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Build a folder that replaces ``path``: yields a new empty folder beside it (mode 0o777 less
    the umask); when the block ends without an exception, that folder is renamed to ``path`` and the
    previous ``path`` (if any) is removed. On any exception the new folder is removed and ``path`` is
    left as it was. Leftovers of earlier builds of ``path`` that died mid-way are removed first.

    ``path`` must not be a file. Between the two renames ``path`` briefly does not exist.
    """
    p = Path(path)
    remove_leftovers(p)
    fd, lock, token = _create_locked(lambda token: p.parent / f".{p.name}.lock-{token}")
    tmp, old = p.parent / f".{p.name}.tmp-{token}", p.parent / f".{p.name}.old-{token}"
    try:
        tmp.mkdir()
        yield tmp
        if p.exists():
            os.replace(p, old)
        try:
            os.replace(tmp, p)
        except BaseException:
            if old.exists() and not p.exists():
                os.replace(old, p)  # put the previous folder back
            raise
    finally:
        # folders first, then the lock file: a folder never exists without its held lock file
        for folder in (tmp, old):
            if folder.exists():
                shutil.rmtree(folder, ignore_errors=True)
        lock.unlink(missing_ok=True)
        os.close(fd)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    with atomic_open(path, "w") as fh:
        fh.write(text)


def write_bytes_atomic(path: str | os.PathLike[str], payload: bytes) -> None:
    with atomic_open(path, "wb") as fh:
        fh.write(payload)
