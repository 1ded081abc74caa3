"""One writer per run directory: a second ``empg train`` (or ``--resume``) aimed at a folder that
a live process is training into would interleave its metrics and overwrite its checkpoints.

The lock is an exclusive ``flock`` on ``<run_dir>/.lock``, which the operating system drops
when the process ends however it ends (``kill -9`` included; a child forked without exec, such
as a process environment pool's worker, shares it until it exits too), so a crash never leaves
a stale lock behind. The file holds the owner's process id, for the error message only. Within
one process the lock is taken once per folder and counted: a library user may build several
trainers for one folder in turn (train, then resume) without locking itself out, and the lock
goes when the last of them releases it (or the process ends). Where ``fcntl`` does not exist
(Windows), or the file system cannot lock (some network and FUSE mounts), nothing is locked
(the latter with a warning).
"""

from __future__ import annotations

import errno
import os
import warnings
from pathlib import Path

from empg.errors import ConfigError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".lock"

#: errors that mean another process holds the lock
_BUSY = (errno.EACCES, errno.EAGAIN, errno.EWOULDBLOCK)

#: folders this process holds the lock of: resolved path -> [the open lock file, holders]
_HELD: dict[Path, list] = {}


def lock_run_dir(run_dir: str | os.PathLike[str]) -> Path:
    """Take the run directory's lock (creating the folder) or raise :class:`ConfigError`
    naming the process that holds it. Returns the resolved folder, the key for
    :func:`unlock_run_dir`. A leading ``~`` is the user's home, as everywhere in empg."""
    folder = Path(run_dir).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # a file of that name, a file on the way, no permission, ...
        raise ConfigError(f"run_dir {str(run_dir)!r}: cannot create the folder ({e})") from e
    key = folder.resolve()
    if fcntl is None:
        return key
    if key in _HELD:
        _HELD[key][1] += 1
        return key
    try:
        f = open(key / LOCK_NAME, "a+")  # noqa: SIM115 - held open for the lock's lifetime
    except OSError as e:
        raise ConfigError(f"run_dir {str(run_dir)!r}: cannot write in the folder ({e})") from e
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        f.seek(0)
        owner = f.read().strip() or "unknown"
        f.close()
        if exc.errno not in _BUSY:
            warnings.warn(
                f"cannot lock {folder} ({exc.strerror}); a second process could write to it too",
                RuntimeWarning,
                stacklevel=2,
            )
            return key
        raise ConfigError(
            f"{folder} is in use by another empg process (pid {owner}); wait for it to end, "
            "or choose another run_dir"
        ) from None
    f.seek(0)
    f.truncate()
    f.write(f"{os.getpid()}\n")
    f.flush()
    _HELD[key] = [f, 1]
    return key


def unlock_run_dir(key: Path | None) -> None:
    """Release one hold taken by :func:`lock_run_dir`; the last one unlocks (a no-op for None
    or a folder this process does not hold). The file stays; an unlocked file means nothing."""
    held = _HELD.get(key) if key is not None else None
    if held is None:
        return
    held[1] -= 1
    if held[1] <= 0:
        del _HELD[key]
        held[0].close()
