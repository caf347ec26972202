"""Command-line options every script shares: range checks of numeric options, names and devices, the
options of a resumed run, and how bad input ends a script (one `error:` line, exit status 2)."""

from __future__ import annotations

import dataclasses
import math
import os
import re
import sys
import types
import typing

MAX_SEED = 2**32 - 1
"""numpy's seeds are 32-bit"""
MAX_TORCH_THREADS = min(256, 4 * (os.cpu_count() or 1))
"""more threads than 4 per core only contend; torch crashes (segfault) on absurd counts such as 100000"""
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,99}")
"""a name that is one safe path component (it becomes part of a directory's name)"""


class BadInput(SystemExit):
    """Bad input from the command line (an option, a path, a checkpoint): the script ends as argparse
    and tyro end it, with `error: <message>` on stderr and exit status 2, and no traceback. The
    message is printed when the exception is made (Python prints nothing for an integer exit
    status); `str()` gives it back to callers and tests."""

    def __init__(self, message: str):
        super().__init__(2)
        self.message = message
        print(f"error: {message}", file=sys.stderr, flush=True)

    def __str__(self) -> str:
        return self.message


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def option_problems(args, *, within: dict[str, tuple[float, float]] = {}, at_least: dict[str, float] = {},
                    above: dict[str, float] = {}, at_most: dict[str, float] = {}, prefix: str = "") -> list[str]:
    """Messages for numeric options that are not finite or out of range. Every float option must be
    finite; `within` (closed ranges: (lowest, highest)), `at_least`, `above` and `at_most` bound the named
    ones (an unset option, None, passes; a tuple or list option is checked number by number). `prefix`
    names a nested group of options, e.g. "groot." for `--groot.port`."""
    at_least = at_least | {name: low for name, (low, _) in within.items()}
    at_most = at_most | {name: high for name, (_, high) in within.items()}

    def numbers(option) -> list:
        return list(option) if isinstance(option, (tuple, list)) else [option]

    values = vars(args)
    problems = [f"{flag(prefix + name)} must be a finite number, got {value}" for name, option in values.items()
                for value in numbers(option) if isinstance(value, float) and not math.isfinite(value)]
    for name in dict.fromkeys([*at_least, *above, *at_most]):
        for value in numbers(values[name]):
            if value is None or (isinstance(value, float) and not math.isfinite(value)):
                continue
            low_ok = value >= at_least[name] if name in at_least else value > above[name] if name in above else True
            high_ok = value <= at_most[name] if name in at_most else True
            if low_ok and high_ok:
                continue
            if name in at_most and (name in at_least or name in above):
                opening = f"[{at_least[name]}" if name in at_least else f"({above[name]}"
                problems.append(f"{flag(prefix + name)} must be within {opening}, {at_most[name]}], got {value}")
            elif name in at_most:
                problems.append(f"{flag(prefix + name)} must be at most {at_most[name]}, got {value}")
            elif name in at_least:
                problems.append(f"{flag(prefix + name)} must be at least {at_least[name]}, got {value}")
            else:
                problems.append(f"{flag(prefix + name)} must be {'positive' if above[name] == 0 else f'above {above[name]}'}, got {value}")
    return problems


def name_problems(args, *names: str) -> list[str]:
    """Messages for options that must be a name, one safe path component (letters, digits, `.`, `_`, `+`,
    `-`, starting with a letter or a digit, at most 100 characters): a run's name becomes a directory's."""
    return [f"{flag(name)} {getattr(args, name)!r} must be a single name: letters, digits and . _ + -, starting with "
            f"a letter or a digit, at most 100 characters" for name in names if not NAME.fullmatch(getattr(args, name))]


def device_problems(device: str) -> list[str]:
    """A message when `--device` names no torch device that this machine has."""
    import torch

    try:
        kind = torch.device(device)
    except RuntimeError:
        return [f"--device {device!r} is not a torch device (cpu, cuda, cuda:1, mps, ...)"]
    if kind.type == "cuda" and not (torch.cuda.is_available() and (kind.index or 0) < torch.cuda.device_count()):
        return [f"--device {device}: this machine has {torch.cuda.device_count()} CUDA GPU(s); use --device cpu"]
    if kind.type == "mps" and not torch.backends.mps.is_available():
        return [f"--device {device}: MPS is not available on this machine; use --device cpu"]
    return []


def refuse(problems: list[str]) -> None:
    """End the script (BadInput) when there are problems: one line for one, a list for several."""
    if len(problems) == 1:
        raise BadInput(problems[0])
    if problems:
        raise BadInput("invalid arguments:\n  " + "\n  ".join(problems))


def fits(value, hint) -> bool:
    """Whether `value`, read from a file, is of the type `hint` that an option is declared with (a bool is no number)."""
    origin, members = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(fits(value, member) for member in members)
    if origin is typing.Literal:
        return value in members
    if origin in (list, tuple):
        return isinstance(value, (list, tuple)) and all(fits(item, members[0]) for item in value)
    if origin is dict:
        return isinstance(value, dict) and all(fits(key, members[0]) and fits(item, members[1]) for key, item in value.items())
    if hint is type(None):
        return value is None
    if hint in (int, float):
        return isinstance(value, (int, float) if hint is float else int) and not isinstance(value, bool)
    return isinstance(value, hint)


def saved_option_problems(saved, defaults, prefix: str = "") -> list[str]:
    """Messages for the options saved in a checkpoint (`dataclasses.asdict` of a script's args) that are not of the
    type the script declares (`defaults` is its `Args()`): a file may hold anything, and `resume_options` takes them."""
    if not isinstance(saved, dict):
        return [f"its saved options{' ' + flag(prefix[:-1]) if prefix else ''} are not a dict"]
    hints = typing.get_type_hints(type(defaults))
    problems = []
    for field in dataclasses.fields(defaults):
        if field.name not in saved:
            continue
        value, default = saved[field.name], getattr(defaults, field.name)
        if dataclasses.is_dataclass(default):
            problems += saved_option_problems(value, default, f"{prefix}{field.name}.")
        elif not fits(value, hint := hints[field.name]):
            problems.append(f"its saved option {flag(prefix + field.name)} is {value!r:.40}, not "
                            f"{hint.__name__ if isinstance(hint, type) else hint}")
    return problems


def resume_options(args, saved: dict, defaults, extendable: tuple[str, ...] = ("total_timesteps",), prefix: str = ""):
    """The options of a resumed run: those saved in its checkpoint (`dataclasses.asdict` of its args),
    except `resume` and the `extendable` ones given larger on this command line; a nested group of
    options (e.g. `groot`) is merged option by option. Returns (args, ignored) where `ignored` lists
    the other options this command line set to something else than the saved run had."""
    options, ignored = {}, []
    for field in dataclasses.fields(defaults):
        name, given, default = field.name, getattr(args, field.name), getattr(defaults, field.name)
        if dataclasses.is_dataclass(default):
            options[name], more = resume_options(given, saved.get(name, {}), default, (), f"{prefix}{name}.")
            ignored += more
            continue
        options[name] = given if name == "resume" else saved.get(name, default)
        if given == default or given == options[name]:
            continue
        if name in extendable and given > options[name]:
            options[name] = given
        else:
            ignored.append(flag(prefix + name))
    return type(args)(**options), sorted(ignored)
