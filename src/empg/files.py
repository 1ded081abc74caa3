"""Whole-file writes: a reader, or a process killed mid-write, never sees half a file."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Flush a folder's entries (a rename into it) to disk; a no-op where folders cannot be
    opened."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(path: str | os.PathLike[str]) -> None:
    """Flush every file under ``path`` and its folders' entries to disk: call it before
    renaming a finished folder into place, so that after a power loss the renamed folder is
    complete, not a set of names with empty files."""
    root = Path(path)
    for p in sorted(root.rglob("*")):
        if p.is_file():
            with open(p, "rb") as f:
                os.fsync(f.fileno())
        elif p.is_dir():
            fsync_dir(p)
    fsync_dir(root)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to a temporary file beside ``path`` (``.<name>.<pid>.tmp``), flush it to
    disk and rename it into place. On failure the temporary file is removed and the error
    raised; ``path`` keeps its old content."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def replace_folder(new: str | os.PathLike[str], dest: str | os.PathLike[str]) -> None:
    """Put the finished folder ``new`` (a sibling of ``dest``) in ``dest``'s place.

    A ``dest`` that exists and holds files is first renamed aside (``.<name>.old-<pid>``) and
    deleted only once ``new`` has taken its name, so a process killed midway leaves the old
    folder (or, between the two renames, its renamed copy), never a mix of old and new files;
    when ``new`` cannot take the name, the old folder gets it back and the error is raised
    (``new`` is kept). ``dest`` must not be a symlink (resolve it first)."""
    new, dest = Path(new), Path(dest)
    if dest.is_dir() and not any(dest.iterdir()):
        os.rename(new, dest)  # a folder may be renamed over an empty one
    elif dest.exists():
        aside = dest.with_name(f".{dest.name}.old-{os.getpid()}")
        os.rename(dest, aside)
        try:
            os.rename(new, dest)
        except OSError:
            os.rename(aside, dest)  # the old folder back under its name
            raise
        shutil.rmtree(aside, ignore_errors=True)
    else:
        os.rename(new, dest)
    fsync_dir(dest.parent)


def move_up(inner: str | os.PathLike[str], *, last: str | None = None) -> None:
    """Move the entries of the folder ``inner`` into its parent and remove ``inner``, the entry
    named ``last`` (a file that marks a complete folder) after all others. Renames within one
    folder; if one fails, the entries already moved go back into ``inner`` and the error is
    raised. For filling an existing empty folder (the current folder, a mount point) whose own
    parent may not be writable."""
    inner = Path(inner)
    dest = inner.parent
    moved: list[str] = []
    try:
        for entry in sorted(inner.iterdir(), key=lambda p: (p.name == last, p.name)):
            os.rename(entry, dest / entry.name)
            moved.append(entry.name)
    except OSError:
        for name in reversed(moved):
            os.rename(dest / name, inner / name)
        raise
    inner.rmdir()
    fsync_dir(dest)


def make_readable(folder: str | os.PathLike[str]) -> None:
    """Let every user read ``folder`` and everything in it (folders 0755, files 0644 or more):
    ``mkdtemp`` makes 0700 folders and some writers 0600 files, which would hide a shared
    cache from other users."""
    root = Path(folder)
    for p in [root, *root.rglob("*")]:
        if p.is_symlink():
            continue
        extra = 0o755 if p.is_dir() else 0o644
        os.chmod(p, p.stat().st_mode | extra)
