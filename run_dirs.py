"""Run directories, each created for one run alone and held by one trainer at a time, and the atomic
replacement of a directory (a dataset or a checkpoint written next to the old one, then swapped in)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import pathlib
import secrets
import shutil
import sys
from collections.abc import Iterator

from command_line import BadInput

LOCK_FILE = "trainer.lock"
"""in a run directory: locked (flock) by the trainer writing into it, and holding that trainer's process id"""


def create_run_dir(root: str | os.PathLike, name: str) -> pathlib.Path:
    """Create `root/name` for this run alone: if another run holds that name (two runs started in the
    same second), take `name-2`, `name-3`, ... The directory is created exclusively, so no two runs
    ever share one."""
    root = pathlib.Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, 1000):
        path = root / (name if attempt == 1 else f"{name}-{attempt}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise RuntimeError(f"could not create a new run directory for {name!r} in {root}")


def resumed_run_dir(checkpoint: str | os.PathLike) -> pathlib.Path:
    """The run directory that a resume of `checkpoint` writes into: the one that holds it, RUN/checkpoints/NAME.pt
    -> RUN (absolute, so the run stays one from any working directory). Never a directory named inside the file:
    a copied run is extended in the copy. ValueError for a checkpoint outside a checkpoints/ folder."""
    path = pathlib.Path(os.path.abspath(checkpoint))
    if path.parent.name != "checkpoints":
        raise ValueError(f"{checkpoint} is not in a run's checkpoints/ folder, and a resumed run goes on in the run "
                         f"directory that holds its checkpoint: copy it to NEW_RUN/checkpoints/{path.name} and resume that")
    return path.parent.parent


@contextlib.contextmanager
def hold_run_dir(run_dir: pathlib.Path) -> Iterator[None]:
    """Hold `run_dir` for this process while the block runs, or BadInput if another live process holds it (a
    trainer still writing the run whose latest.pt is resumed). The lock is the kernel's (flock), so it ends with
    the block or with the process, however it ends: a killed trainer leaves no stale lock."""
    with open(run_dir / LOCK_FILE, "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            raise BadInput(f"{run_dir} is in use by process {lock.read().strip() or '?'}, a trainer still writing it; "
                           f"wait for it to end, or resume a copy (cp -a the run directory)") from None
        lock.truncate(0)
        lock.write(str(os.getpid()))
        lock.flush()
        yield


def unique_sibling(target: pathlib.Path, kind: str) -> pathlib.Path:
    """A path beside `target` (same filesystem, so renames are atomic) that does not exist yet."""
    while True:
        path = target.with_name(f"{target.name}.{kind}-{os.getpid()}-{secrets.token_hex(4)}")
        if not path.exists() and not path.is_symlink():
            return path


def refuse_mount_point(target: pathlib.Path) -> None:
    """ValueError, before any work, if the existing directory `target` is a mount point: an output staged
    beside it (`unique_sibling`) could not be renamed into it, since renames do not cross filesystems."""
    if target.is_dir() and not target.is_symlink() and os.stat(target).st_dev != os.stat(target.parent).st_dev:
        raise ValueError(f"{target} is a mount point (another filesystem than {target.parent}); the output is written "
                         f"beside it and then moved in, which cannot cross filesystems: write into a new directory inside it")


def replace_directory(target: pathlib.Path, new: pathlib.Path) -> None:
    """Put the complete directory `new` in place of the directory `target`: the old one is moved
    aside first and put back if the swap fails, and removed only once `new` is in place (a failure
    to remove it is a warning: the replacement has happened)."""
    aside = unique_sibling(target, "old")
    os.rename(target, aside)
    try:
        os.rename(new, target)
    except BaseException:
        os.rename(aside, target)
        raise
    try:
        shutil.rmtree(aside)
    except OSError as error:
        print(f"warning: the replaced {target.name}, moved aside to {aside}, could not be removed: {error}", file=sys.stderr)
