"""Atomic file writes: a temporary file beside the target, renamed over it only on success.

The temporary file is ``.<name>.<pid>.<random>.part`` in the target's folder. It is removed
when the block fails; a process killed mid-write (``kill -9``) cannot remove it, so the next
write of the same target removes the leftovers of writers that are no longer running (and
:func:`remove_stale_parts` cleans a whole folder). The finished file gets the permissions of
an ordinary new file (``0o666`` less the user's umask), not the ``0o600`` of a temporary file.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
import time
from pathlib import Path

_PART = re.compile(r"^\.(?P<name>.+?)\.(?:(?P<pid>\d+)\.)?[A-Za-z0-9_]{6,}\.part$")
_MIDDLE = re.compile(r"^(?:(?P<pid>\d+)\.)?[A-Za-z0-9_]{6,}$")
LEGACY_PART_AGE_S = 3600.0
"""Temporary files without a writer's pid (written by older glasslab versions) are removed
once they are older than this."""


def _umask() -> int:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def remove_stale_parts(folder, name: str | None = None) -> list[Path]:
    """Remove temporary ``*.part`` files left in ``folder`` by killed atomic writes.

    Only files of writers that are no longer running are removed (or, for files without a
    recorded writer, files older than :data:`LEGACY_PART_AGE_S`); ``name`` restricts the
    clean-up to the temporary files of that one target. Returns the paths removed.
    """
    folder = Path(folder)
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        if name is None:
            match = _PART.match(entry.name)
        elif entry.name.startswith(f".{name}.") and entry.name.endswith(".part"):
            match = _MIDDLE.match(entry.name[len(name) + 2:-len(".part")])
        else:
            match = None
        if not match:
            continue
        try:
            if match["pid"] is not None:
                stale = not _alive(int(match["pid"]))
            else:
                stale = now - entry.stat(follow_symlinks=False).st_mtime > LEGACY_PART_AGE_S
            if stale and entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            continue
    return removed


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path next to ``path``; move it onto ``path`` if the block succeeds.

    An interruption or an exception leaves ``path`` as it was (absent or the old file) and
    removes the temporary file, so no reader ever sees a half-written file. Leftovers of
    earlier writers of ``path`` that were killed are removed first.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_parts(path.parent, path.name)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".part", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json(path, obj) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
