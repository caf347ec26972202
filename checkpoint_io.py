"""Checkpoints of the residual-PPO scripts: atomic writes, safe reads, and the residual actor that evaluation runs.

A checkpoint is a dict of tensors, numbers, strings, lists and dicts (the args as a plain dict),
written with `torch.save` and read with `torch.load(..., weights_only=True)`: loading a file never
runs code, whoever wrote it. Before torch reads it, its zip archive is checked to hold only uncompressed
entries, CHECKPOINT_MAX_BYTES at most; after, every field is checked for its type, finite values and
sizes, so a malformed file is refused with one line instead of failing mid-run. Its main fields:

    format, trainer        layout version; the script that wrote it (a name, never imported)
    actor_program          the deterministic residual actor as an exported program (actor_program.py):
                           what evaluation runs, so a copied script's network is evaluated as it trained
    noise_program          (ppo_noise_groot.py) the noise policy's mean, states -> GR00T flow starts, also run by evaluation
    agent, optimizer       state dicts (the agent's holds the observation-normalization statistics), to resume
    args, base_config      the training options, and what rebuilds the base policy
    state_dim, action_dim, global_step, iteration, alpha, tape_half_size, best_eval, ...
"""

from __future__ import annotations

import math
import os
import pathlib
import pickle
import uuid
import zipfile

import numpy as np
import torch

import so101_env
from actor_program import ActorProgram
from command_line import saved_option_problems
from run_dirs import resumed_run_dir

CHECKPOINT_FORMAT = 2
"""2: the checkpoint carries its actor as a program (`actor_program`); 1 (before): weights alone."""
CHECKPOINT_MAX_BYTES = 256 << 20
"""Most bytes a residual checkpoint's entries may hold (its networks and their programs take a few MB)."""


def save_checkpoint(path: str | os.PathLike, payload: dict) -> None:
    """Write atomically through a temporary file of this writer's own: a crash mid-write, or another
    process saving the same path, never leaves a half-written file under `path`."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_checkpoint(path: str | os.PathLike, base_policy: str | None = None) -> dict:
    """Load and check a residual checkpoint; FileNotFoundError or ValueError with a clear message."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    check_archive(path)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        # torch's weights-only unpickler names the first class or function it refused to build.
        refused = next((line.strip() for line in str(error).splitlines() if "global" in line.lower()), None)
        if refused is None:
            raise ValueError(f"checkpoint {path} cannot be read (truncated or corrupted file?)") from None
        raise ValueError(
            f"refusing to load {path}: it holds Python objects other than tensors, numbers, strings, lists and dicts, "
            f"and unpickling them could run code ({refused}). This project's training scripts never write such a file."
        ) from None
    except Exception as error:
        raise ValueError(f"checkpoint {path} cannot be read (truncated or corrupted file?): {error}") from error
    if isinstance(checkpoint, dict) and checkpoint.get("format") == 1:
        raise ValueError(
            f"{path} is a format-1 checkpoint, from before checkpoints carried the actor program that evaluation runs; "
            f"train it again with this version's scripts (or use the version of the project that wrote it)")
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a residual-PPO checkpoint of format {CHECKPOINT_FORMAT}")
    missing = [key for key in ("agent", "args", "base_config", "state_dim", "action_dim", "alpha") if key not in checkpoint]
    if missing:
        raise ValueError(f"checkpoint {path} lacks {missing}: it was not written by this project's training scripts")
    problems = field_problems(checkpoint)
    if problems:
        raise ValueError(f"checkpoint {path} is malformed: {'; '.join(problems)}")
    if checkpoint["state_dim"] != so101_env.STATE_DIM or checkpoint["action_dim"] != so101_env.ACTION_DIM:
        raise ValueError(
            f"checkpoint {path} was trained for observations of size {checkpoint['state_dim']} and actions of "
            f"size {checkpoint['action_dim']}; this environment has {so101_env.STATE_DIM} and {so101_env.ACTION_DIM}"
        )
    trained_base = checkpoint["base_config"]["name"]
    if base_policy is not None and base_policy != trained_base:
        raise ValueError(
            f"checkpoint {path} holds a residual for the {trained_base!r} base, not {base_policy!r} (it was trained by "
            f"{checkpoint.get('trainer', 'an earlier version of the training scripts')}); use that base, or another checkpoint"
        )
    return checkpoint


def check_archive(path: pathlib.Path) -> None:
    """ValueError unless `path` is what torch.save writes, a zip archive of uncompressed ("stored") entries,
    holding CHECKPOINT_MAX_BYTES at most. torch.load expands a compressed entry whatever its size (deflate
    turns 2 MB of file into 400 MB of zeros), so this is checked on the archive's directory, before."""
    try:
        with zipfile.ZipFile(path) as archive:
            entries = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError):
        raise ValueError(f"checkpoint {path} cannot be read (truncated or corrupted file?)") from None
    compressed = [entry.filename for entry in entries if entry.compress_type != zipfile.ZIP_STORED]
    if compressed:
        raise ValueError(f"refusing to load {path}: its entry {compressed[0]} is compressed, which torch.save never "
                         f"does, and a compressed entry can expand to any size")
    total = sum(entry.file_size for entry in entries)
    if total > CHECKPOINT_MAX_BYTES:
        raise ValueError(f"refusing to load {path}: its entries hold {total} bytes, more than {CHECKPOINT_MAX_BYTES}, "
                         f"the most a residual checkpoint may hold")


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def nonfinite_tensors(tensors: dict) -> list[str]:
    """The names of the floating-point tensors that hold NaN or an infinity (in a state dict, nested ones too)."""
    found = []
    for name, value in tensors.items():
        if isinstance(value, dict):
            found += [f"{name}.{inner}" for inner in nonfinite_tensors(value)]
        elif isinstance(value, torch.Tensor) and value.is_floating_point() and not torch.isfinite(value).all():
            found.append(str(name))
    return found


def field_problems(checkpoint: dict) -> list[str]:
    """What is wrong with the fields that evaluation and resume read, each as a short clause."""
    problems = []
    if not isinstance(checkpoint.get("trainer", ""), str):
        problems.append("its trainer is not a name")
    if not isinstance(checkpoint["args"], dict):
        problems.append("its args are not a dict of options")
    base = checkpoint["base_config"]
    if not (isinstance(base, dict) and isinstance(base.get("name"), str)):
        problems.append("its base_config is not a dict with the base's name")
    elif "act_scale" in base and not (is_number(base["act_scale"]) and math.isfinite(base["act_scale"]) and base["act_scale"] > 0):
        problems.append(f"its base_config's act_scale must be a positive number, got {base['act_scale']!r:.40}")
    problems += [f"its {key} must be a whole number, got {checkpoint[key]!r:.40}" for key in ("state_dim", "action_dim")
                 if not is_count(checkpoint[key])]
    if not (is_number(checkpoint["alpha"]) and math.isfinite(checkpoint["alpha"])):
        problems.append(f"its alpha must be a finite number, got {checkpoint['alpha']!r:.40}")
    agent = checkpoint["agent"]
    if not (isinstance(agent, dict) and all(isinstance(name, str) and isinstance(value, torch.Tensor)
                                            for name, value in agent.items())):
        problems.append("its agent is not a state dict (names -> tensors)")
    elif nonfinite_tensors(agent):
        problems.append(f"its agent's {', '.join(nonfinite_tensors(agent)[:3])} hold NaN or infinite values")
    return problems


def load_resume(path: str | os.PathLike, defaults, base_policy: str | None = None,
                steers_flow: bool = False) -> tuple[dict, pathlib.Path]:
    """A checkpoint that a training script (whose default `Args()` are `defaults`) resumes, and the run directory it
    goes on in: the one that holds it (`resumed_run_dir`), never one named inside the file. Checked beyond
    `load_checkpoint`: its optimizer state, training counters and saved options, and that it holds a noise policy
    steering GR00T's flow exactly when the script trains one (`steers_flow`); `check_agent_state` checks its
    agent and optimizer against the script's agent. FileNotFoundError or ValueError with a clear message."""
    checkpoint = load_checkpoint(path, base_policy)
    run_dir = resumed_run_dir(path)
    if "optimizer" not in checkpoint:
        raise ValueError(f"{path} holds no optimizer state (an example checkpoint, kept small?): it can be evaluated "
                         f"(eval_policy.py --model-path {path}), not resumed; train a new run instead")
    missing = [key for key in ("global_step", "iteration", "best_eval", "recent_successes", "tape_half_size")
               if key not in checkpoint]
    if missing:
        raise ValueError(f"checkpoint {path} lacks {missing}, which a resumed run continues from")
    best, successes, tape = checkpoint["best_eval"], checkpoint["recent_successes"], checkpoint["tape_half_size"]
    problems = [f"its {key} must be a whole number, got {checkpoint[key]!r:.40}" for key in ("global_step", "iteration")
                if not is_count(checkpoint[key])]
    if not (isinstance(best, (list, tuple)) and len(best) == 2 and all(is_number(x) and not math.isnan(x) for x in best)):
        problems.append(f"its best_eval must be (success rate, return), got {best!r:.40}")
    if not (isinstance(successes, list) and all(isinstance(success, bool) for success in successes)):
        problems.append(f"its recent_successes must be a list of True/False, got {successes!r:.40}")
    if not (is_number(tape) and 0.02 <= tape <= 0.3):  # the env's range, NaN excluded
        problems.append(f"its tape_half_size must be within [0.02, 0.3], got {tape!r:.40}")
    optimizer = checkpoint["optimizer"]
    if not (isinstance(optimizer, dict) and isinstance(optimizer.get("state"), dict)
            and isinstance(optimizer.get("param_groups"), list)):
        problems.append("its optimizer is not an optimizer's state dict")
    elif nonfinite_tensors(optimizer["state"]):
        problems.append(f"its optimizer state {', '.join(nonfinite_tensors(optimizer['state'])[:3])} holds NaN or "
                        f"infinite values")
    problems += saved_option_problems(checkpoint["args"], defaults)
    if problems:
        raise ValueError(f"checkpoint {path} cannot be resumed: {'; '.join(problems)}")
    if ("noise_policy" in checkpoint) != steers_flow:  # resumed by the other script, the run would change what it trains
        held = "also steers GR00T's flow with a noise policy" if "noise_policy" in checkpoint else "holds no noise policy"
        writer = checkpoint.get("trainer", "ppo_noise_groot.py" if "noise_policy" in checkpoint else "another script")
        raise ValueError(f"{path} {held}; resume it with the script that wrote it, {writer}")
    return checkpoint, run_dir


def check_agent_state(checkpoint: dict, path: str | os.PathLike, agent: torch.nn.Module) -> None:
    """ValueError unless the agent and optimizer state of a checkpoint read by `load_resume` fit `agent`, a new
    agent of the resuming script built with the run's options: the same tensors by name and shape, and per
    parameter optimizer state of its shape. (`agent` is loaded with the checkpoint's state as it is checked.)"""
    try:
        agent.load_state_dict(checkpoint["agent"])
    except RuntimeError as error:
        problem = " ".join(str(error).split())  # torch lists missing keys and wrong shapes over several lines
        raise ValueError(f"checkpoint {path}: its agent does not fit this script's Agent: {problem[:300]}") from None
    shapes = [parameter.shape for parameter in agent.parameters()]
    groups = checkpoint["optimizer"]["param_groups"]
    indices = [index for group in groups if isinstance(group, dict) and isinstance(group.get("params"), list)
               for index in group["params"]]
    if not (all(isinstance(index, int) for index in indices) and sorted(indices) == list(range(len(shapes)))):
        raise ValueError(f"checkpoint {path}: its optimizer state is for {len(indices)} parameters, this script's "
                         f"Agent has {len(shapes)}")
    for index, state in checkpoint["optimizer"]["state"].items():
        if index not in range(len(shapes)) or not isinstance(state, dict):
            raise ValueError(f"checkpoint {path}: its optimizer state {index!r:.20} is for no parameter of this script's Agent")
        wrong = [name for name, value in state.items()
                 if not isinstance(value, torch.Tensor) or (value.dim() and value.shape != shapes[index])]
        if wrong:
            raise ValueError(f"checkpoint {path}: its optimizer state {index} ({', '.join(map(str, wrong))}) does not "
                             f"fit that parameter, of shape {list(shapes[index])}")


def load_actor_program(checkpoint: dict, path: str | os.PathLike) -> ActorProgram:
    """The residual actor a checkpoint (read by `load_checkpoint`) is evaluated with, checked to map states
    [N, STATE_DIM] and base actions [N, ACTION_DIM] to float32 residuals [N, ACTION_DIM]; ValueError otherwise."""
    if "actor_program" not in checkpoint:
        raise ValueError(
            f"checkpoint {path} has no actor_program, the exported residual actor that evaluation runs: the script that "
            f"wrote it does not save one; save `export_actor(agent.residual_mean, ...)` as its \"actor_program\", as "
            f"ppo_residual_jacobian.py does, and train again")
    try:
        actor = ActorProgram(checkpoint["actor_program"])
    except ValueError as error:
        raise ValueError(f"checkpoint {path}: {error}") from None
    nonfinite = nonfinite_tensors(actor.values)
    if nonfinite:  # a trained actor's never are: its residuals would be NaN, which the env refuses at the first step
        raise ValueError(f"checkpoint {path}: its actor program's weights {', '.join(nonfinite[:3])} hold NaN or "
                         f"infinite values")
    state_dim, action_dim = so101_env.STATE_DIM, so101_env.ACTION_DIM
    for n in (1, 3):
        try:
            residual = actor(np.zeros((n, state_dim), np.float32), np.zeros((n, action_dim), np.float32))
            problem = None if residual.shape == (n, action_dim) and residual.dtype == np.float32 else (
                f"for N = {n} it returns {residual.dtype} {list(residual.shape)}")
        except Exception as error:  # whatever an untrusted program does wrong, it is refused
            problem = f"for N = {n} it fails: {(str(error) or type(error).__name__).splitlines()[0]}"
        if problem:
            raise ValueError(
                f"checkpoint {path}: its actor program does not map states [N, {state_dim}] and base actions "
                f"[N, {action_dim}] to float32 residuals [N, {action_dim}] ({problem}); it was exported for "
                f"another environment, or from another function than agent.residual_mean")
    return actor


def load_noise_program(checkpoint: dict, path: str | os.PathLike) -> ActorProgram | None:
    """The noise policy of a checkpoint that steers its GR00T base's flow (ppo_noise_groot.py saves its mean as
    "noise_program"), checked to map states [N, STATE_DIM] to float32 flow starts [N, horizon, ACTION_DIM];
    None when the checkpoint has none, ValueError when it is not such a program."""
    if "noise_program" not in checkpoint:
        return None
    try:
        program = ActorProgram(checkpoint["noise_program"])
    except ValueError as error:
        raise ValueError(f"checkpoint {path}: its noise program: {error}") from None
    for n in (1, 3):
        try:
            starts = program(np.zeros((n, so101_env.STATE_DIM), np.float32))
            good = starts.dtype == np.float32 and starts.ndim == 3 and starts.shape[::2] == (n, so101_env.ACTION_DIM)
            problem = None if good else f"for N = {n} it returns {starts.dtype} {list(starts.shape)}"
        except Exception as error:  # whatever an untrusted program does wrong, it is refused
            problem = f"for N = {n} it fails: {(str(error) or type(error).__name__).splitlines()[0]}"
        if problem:
            raise ValueError(f"checkpoint {path}: its noise program does not map states [N, {so101_env.STATE_DIM}] to "
                             f"float32 flow starts [N, horizon, {so101_env.ACTION_DIM}] ({problem})")
    return program
