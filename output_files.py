"""Files written where the command line says (an evaluation's JSON, chart and videos, a benchmark's report):
checked before any work, so that none replaces a file this run did not write unless `--overwrite` says so,
and written atomically, so that a crash or a full disk never leaves half a file."""

from __future__ import annotations

import os
import pathlib
import secrets
from collections.abc import Callable, Iterable


def output_problems(outputs: Iterable[tuple[str, str | os.PathLike]], overwrite: bool,
                    inputs: Iterable[str | os.PathLike] = ()) -> list[str]:
    """Why the `outputs`, (option, path) pairs such as ("--output-json", "runs/eval.json"), cannot be written:
    an output that is one of the run's `inputs`, that another output names too, that is a directory or that
    lies under a file is always refused; an existing file is refused without `overwrite`."""
    read = {pathlib.Path(path).resolve() for path in inputs}
    written: dict[pathlib.Path, str] = {}
    problems = []
    for option, path in outputs:
        path = pathlib.Path(path)
        real = path.resolve()
        folder = next(parent for parent in path.absolute().parents if parent.exists())
        if real in read:
            problems.append(f"{option} {path} is an input of this run; write the output to another path")
        elif real in written:
            problems.append(f"{option} {path} is also where {written[real]} writes; give them different paths")
        elif path.is_dir():
            problems.append(f"{option} {path} is a directory; name a file")
        elif not folder.is_dir():
            problems.append(f"{option} {path} cannot be written: {folder} is a file, not a directory")
        elif (path.exists() or path.is_symlink()) and not overwrite:
            problems.append(f"{option} {path} exists and this run did not write it; choose another path, "
                            f"or pass --overwrite to replace it")
        written.setdefault(real, option)
    return problems


def write_atomically(path: str | os.PathLike, write: Callable[[pathlib.Path], object], overwrite: bool) -> None:
    """`write(temporary)` fills a temporary file beside `path` (with its suffix, for writers that choose the
    format by it), which then takes `path`'s place in one step (os.replace): a failure midway leaves `path`
    as it was, and no temporary file. A file already at `path` is replaced only with `overwrite`: one that
    appeared while this run worked raises FileExistsError."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.stem}.{os.getpid()}-{secrets.token_hex(4)}.partial{path.suffix}")
    try:
        write(temporary)
        if not overwrite and (path.exists() or path.is_symlink()):
            raise FileExistsError(f"{path} appeared while this run worked; it was left as it was "
                                  f"(pass --overwrite to replace it)")
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
