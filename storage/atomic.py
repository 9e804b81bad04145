"""Atomic writes, locks and clean-up: a result file either exists complete or not at all.

Temporary files are named ``.<name>.<host>-<pid>.<random>.part`` beside their target, so a later
run can tell the leftovers of a dead process (removed by :func:`clean_stale_parts`) from a live
one's. Files and folders are created with the permissions the umask allows (``mkstemp`` alone would
make them 0600 / 0700, unreadable to colleagues sharing a results folder).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Iterator

_HOST = re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname())[:40] or "host"
_PART = re.compile(r"^\..*\.(?P<host>[A-Za-z0-9_-]+)-(?P<pid>\d+)\.[^.]*\.part$")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


UMASK = _umask()


def _tag() -> str:
    return f"{_HOST}-{os.getpid()}."


def _honour_umask(path: Path, is_dir: bool) -> None:
    os.chmod(path, (0o777 if is_dir else 0o666) & ~UMASK)


def mkdirs(path: str | Path) -> Path:
    """``mkdir -p`` (folders get the umask's permissions, as with ``mkdir``)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds."""
    path = Path(path)
    mkdirs(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{_tag()}", suffix=".part", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():
            _honour_umask(tmp_path, is_dir=False)
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _part_dir(path: Path) -> Path:
    """A new temporary folder beside ``path``, named as :func:`clean_stale_parts` recognises."""
    mkdirs(path.parent)
    return Path(tempfile.mkdtemp(prefix=f".{path.name}.{_tag()}", suffix=".part", dir=path.parent))


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary directory; it replaces ``path`` only if the block succeeds. Callers that
    may race on the same ``path`` hold :func:`file_lock` around it."""
    path = Path(path)
    tmp = _part_dir(path)
    try:
        yield tmp
        _honour_umask(tmp, is_dir=True)
        if path.exists():
            old = path.with_name(f".{path.name}.{_tag()}old.part")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def atomic_files(path: str | Path) -> Iterator[Path]:
    """For a writer that makes several files from one name (OpenVINO's ``x.xml`` and ``x.bin``): yield
    a temporary path named like ``path`` in a temporary folder beside it; if the block succeeds, every
    file written there moves beside ``path`` (``path`` itself last, so its presence says the set is
    complete). The folder is removed either way, or by :func:`clean_stale_parts` after a kill."""
    path = Path(path)
    tmp = _part_dir(path)
    try:
        yield tmp / path.name
        made = sorted(tmp.iterdir(), key=lambda p: p.name == path.name)
        for f in made:
            _honour_umask(f, is_dir=False)
            os.replace(f, path.parent / f.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def file_lock(path: str | Path) -> Iterator[None]:
    """An exclusive lock between processes (and threads) on ``path`` (a ``.lock`` file, kept).

    The kernel releases it when the holder dies, so a ``kill -9`` never leaves a stale lock."""
    path = Path(path)
    mkdirs(path.parent)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666 & ~UMASK)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError as e:
        return e.errno == errno.EPERM
    return True


def clean_stale_parts(root: str | Path) -> list[Path]:
    """Remove the ``*.part`` files and folders under ``root`` left by dead processes of this host.
    A live process's (and another host's) are left alone. Returns what was removed."""
    root = Path(root)
    removed = []
    if not root.is_dir():
        return removed
    for dirpath, dirnames, filenames in os.walk(root):
        for name in list(dirnames) + filenames:
            m = _PART.match(name)
            if not m or m["host"] != _HOST or pid_alive(int(m["pid"])):
                continue
            p = Path(dirpath) / name
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
                dirnames.remove(name)
            else:
                p.unlink(missing_ok=True)
            removed.append(p)
    return removed
