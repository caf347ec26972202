"""Helpers every script shares that are not part of any algorithm (the project's `cleanrl_utils`):
run directories, numeric option checks, stop signals, resume options, and evaluation videos."""

from __future__ import annotations

import dataclasses
import io
import math
import os
import pathlib
import secrets
import shutil
import signal
import sys
import threading

import imageio.v2 as imageio
import numpy as np


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


def unique_sibling(target: pathlib.Path, kind: str) -> pathlib.Path:
    """A path beside `target` (same filesystem, so renames are atomic) that does not exist yet."""
    while True:
        path = target.with_name(f"{target.name}.{kind}-{os.getpid()}-{secrets.token_hex(4)}")
        if not path.exists() and not path.is_symlink():
            return path


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


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def option_problems(args, at_least: dict[str, float] = {}, above: dict[str, float] = {},
                    at_most: dict[str, float] = {}) -> list[str]:
    """Messages for numeric options that are not finite or out of range. Every float option must be
    finite; `at_least`/`above`/`at_most` bound the named ones (unset options, None, pass)."""
    values = vars(args)
    problems = [f"{flag(name)} must be a finite number, got {value}" for name, value in values.items()
                if isinstance(value, float) and not math.isfinite(value)]
    for name in dict.fromkeys([*at_least, *above, *at_most]):
        value = values[name]
        if value is None or (isinstance(value, float) and not math.isfinite(value)):
            continue
        low_ok = value >= at_least[name] if name in at_least else value > above[name] if name in above else True
        high_ok = value <= at_most[name] if name in at_most else True
        if low_ok and high_ok:
            continue
        if name in at_most and (name in at_least or name in above):
            opening = f"[{at_least[name]}" if name in at_least else f"({above[name]}"
            problems.append(f"{flag(name)} must be within {opening}, {at_most[name]}], got {value}")
        elif name in at_most:
            problems.append(f"{flag(name)} must be at most {at_most[name]}, got {value}")
        elif name in at_least:
            problems.append(f"{flag(name)} must be at least {at_least[name]}, got {value}")
        else:
            problems.append(f"{flag(name)} must be {'positive' if above[name] == 0 else f'above {above[name]}'}, got {value}")
    return problems


class StopSignals:
    """Ctrl-C and SIGTERM (a `kill`, a job scheduler's time limit) both stop training the same way:
    KeyboardInterrupt in the main loop, which saves a checkpoint. `exit_status` then tells the caller
    which one it was, 130 or 143 as a shell reports them, so a scheduler never reads a stop as success.
    Only the first SIGTERM interrupts: `timeout` signals the process and then its process group, and
    the second copy must not cut short the checkpoint that the first one started (SIGKILL still stops)."""

    def __init__(self):
        self.received = signal.SIGINT
        signal.signal(signal.SIGTERM, self._terminate)

    def _terminate(self, signum, frame):
        if self.received == signal.SIGTERM:  # already stopping
            return
        self.received = signal.SIGTERM
        raise KeyboardInterrupt

    @property
    def exit_status(self) -> int:
        return 128 + int(self.received)


def close_writer(writer, timeout_s: float = 10.0) -> None:
    """`writer.close()` (a SummaryWriter), given up after `timeout_s` with a warning. A KeyboardInterrupt
    that lands inside one of the writer's queue operations can leave its background thread asleep until
    its next periodic flush (two minutes), and close() waits for that thread: 4 of 21 SIGTERMs
    to finetune_groot.py at `--log-every 1`. The checkpoint is saved before this, so only the last
    scalars are at stake, and the writer's thread is a daemon: it does not hold up the exit."""
    closer = threading.Thread(target=writer.close, daemon=True)
    closer.start()
    closer.join(timeout_s)
    if closer.is_alive():
        print(f"warning: TensorBoard's event writer did not close within {timeout_s:.0f} s (interrupted while "
              "writing); its last scalars may be missing", file=sys.stderr, flush=True)


def resume_options(args, saved: dict, defaults, extendable: tuple[str, ...] = ("total_timesteps",)):
    """The options of a resumed run: those saved in its checkpoint, except `resume` and the
    `extendable` ones given larger on this command line. Returns (args, ignored) where `ignored`
    lists the other options this command line set to something else than the saved run had."""
    known = {field.name for field in dataclasses.fields(defaults)}
    merged = {name: value for name, value in saved.items() if name in known} | {"resume": args.resume}
    ignored = []
    for name in known - {"resume", "batch_size", "minibatch_size", "num_iterations"}:
        given, default = getattr(args, name), getattr(defaults, name)
        if given == default or given == merged.get(name, default):
            continue
        if name in extendable and given > merged.get(name, default):
            merged[name] = given
        else:
            ignored.append(flag(name))
    return type(args)(**merged), sorted(ignored)


def write_video(frames: list[np.ndarray], path: pathlib.Path, writer, tag: str, step: int, fps: int) -> None:
    """MP4 on disk; an animated GIF in TensorBoard's image tab (its add_video needs moviepy 1.x)."""
    from tensorboard.compat.proto.summary_pb2 import Summary

    path.parent.mkdir(parents=True, exist_ok=True)
    imageio.mimwrite(path, frames, fps=fps, macro_block_size=8)
    small = [frame[::2, ::2] for frame in frames[::2]]  # keep the event file small
    gif = io.BytesIO()
    imageio.mimwrite(gif, small, format="GIF", duration=2000 / fps, loop=0)
    height, width, _ = small[0].shape
    image = Summary.Image(height=height, width=width, colorspace=3, encoded_image_string=gif.getvalue())
    writer.file_writer.add_summary(Summary(value=[Summary.Value(tag=tag, image=image)]), step)
