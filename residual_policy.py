"""A residual checkpoint as a policy: its base rebuilt from the config stored in it, its exported actor on top.

eval_policy.py and deploy.py (and the LeRobot policy plugin) all run a checkpoint through these, so each runs it
as it was trained:

    policy = load_residual("runs/<run>/checkpoints/best.pt", GrootOptions.unset(), device="cpu", seed=0)
    action = policy.act(states, images)   # base + alpha * residual, as in training
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

import so101_env
from base_policies import ResidualPolicy, make_base_policy
from checkpoint_io import load_actor_program, load_checkpoint, load_noise_program
from groot_base import GrootOptions  # importing it registers the groot base


def stored_base_kwargs(config: dict, groot: GrootOptions, device: str, seed: int, doing: str = "evaluate it") -> dict:
    """make_base_policy keyword arguments that rebuild a checkpoint's base from its stored config (less its name).
    A groot base (a hybrid's member too) takes the `groot` options given on the command line, for the others the
    stored settings, where they stay on this machine (GrootOptions.confirmed_by: a file never chooses a server or
    a download, and the error names the flags to pass to `doing`), and `device` and `seed` (the flow noise, so
    that a rerun replays the same episodes). ValueError."""
    if not (isinstance(config, dict) and isinstance(config.get("name"), str)):
        raise ValueError(f"its stored base {config!r:.60} has no name")
    kwargs = {key: value for key, value in config.items() if key != "name"}
    if config["name"] == "groot":
        settings = GrootOptions.from_base_config(config).overridden_by(groot).confirmed_by(groot, doing)
        problems = settings.problems()
        if problems:
            raise ValueError(f"its GR00T base settings are out of range: {'; '.join(problems)}")
        return kwargs | settings.base_kwargs() | {"device": device, "seed": seed}
    if config["name"] == "hybrid" and isinstance(kwargs.get("members"), list):
        kwargs["members"] = [{**stored_base_kwargs(member, groot, device, seed, doing), "name": member["name"]}
                             for member in kwargs["members"]]
    return kwargs


def residual_from_loaded(checkpoint: dict, actor: Callable[[np.ndarray, np.ndarray], np.ndarray],
                         base_kwargs: dict | None = None, name: str | None = None,
                         flow_start: Callable[[np.ndarray], np.ndarray] | None = None,
                         num_envs: int = 1) -> ResidualPolicy:
    """A trained residual on top of its base, for `num_envs` environments: the `actor` program of a checkpoint read
    with `load_checkpoint` (`load_actor_program`: no code is loaded from the file) and the base its config rebuilds
    with `base_kwargs` (default: `stored_base_kwargs` with no GR00T option given, this machine's default device, seed 0).
    `flow_start`, the checkpoint's noise program (`load_noise_program`), starts the flow of each of its GR00T
    base's chunks."""
    base_name = checkpoint["base_config"]["name"]
    if base_kwargs is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
        base_kwargs = stored_base_kwargs(checkpoint["base_config"], GrootOptions.unset(), device, 0)
    try:
        base = make_base_policy(base_name, num_envs=num_envs, **base_kwargs)
    except TypeError as error:  # a stored setting that the base does not take, or of the wrong type
        raise ValueError(f"its stored {base_name} base cannot be rebuilt: {error}") from None
    if flow_start is not None:  # refused before any episode: another base, a server backend, another chunk length
        if base_name != "groot":
            raise ValueError(f"its noise program steers a GR00T base's flow, but its base is {base_name!r}")
        base.model_flow_starts(flow_start(np.zeros((num_envs, so101_env.STATE_DIM), np.float32)))
    return ResidualPolicy(base, actor, checkpoint["alpha"], name, flow_start)


def load_residual(path: str, groot: GrootOptions, device: str, seed: int, doing: str = "run it",
                  num_envs: int = 1) -> ResidualPolicy:
    """The residual checkpoint at `path` on its base, for `num_envs` environments, checked as eval_policy.py checks it
    (load_checkpoint, the actor and noise programs, the stored base); FileNotFoundError or ValueError."""
    checkpoint = load_checkpoint(path)
    actor = load_actor_program(checkpoint, path)
    flow_start = load_noise_program(checkpoint, path)
    try:
        kwargs = stored_base_kwargs(checkpoint["base_config"], groot, device, seed, doing)
    except ValueError as error:
        raise ValueError(f"checkpoint {path}: {error}") from None
    return residual_from_loaded(checkpoint, actor, kwargs, flow_start=flow_start, num_envs=num_envs)
