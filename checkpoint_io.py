"""Checkpoints of the residual-PPO scripts: atomic writes, safe reads, and the residual rebuilt for evaluation.

A checkpoint is a dict of tensors, numbers, strings, lists and dicts (the args as a plain dict),
written with `torch.save` and read with `torch.load(..., weights_only=True)`: loading a file never
runs code, whoever wrote it. Its main fields:

    format, trainer        layout version; the script that wrote it (a name, never imported)
    agent, optimizer       state dicts (the agent's holds the observation-normalization statistics)
    actor_activation       the actor MLP's hidden activation, so evaluation can rebuild it
    args, base_config      the training options, and what rebuilds the base policy
    state_dim, action_dim, global_step, iteration, alpha, tape_half_size, best_eval, ...
"""

from __future__ import annotations

import os
import pathlib
import pickle
import uuid

import numpy as np
import torch
import torch.nn as nn

import so101_env

CHECKPOINT_FORMAT = 1
ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU, "gelu": nn.GELU, "silu": nn.SiLU}


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
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a residual-PPO checkpoint of format {CHECKPOINT_FORMAT}")
    missing = [key for key in ("agent", "args", "base_config", "state_dim", "action_dim", "alpha") if key not in checkpoint]
    if missing:
        raise ValueError(f"checkpoint {path} lacks {missing}: it was not written by this project's training scripts")
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


class ResidualActor(nn.Module):
    """The deterministic residual of a checkpoint, rebuilt from its weights alone (no training code
    imported): normalized state and base action -> MLP -> residual mean.

    It reads the layers `actor_mean.<i>.weight/bias` and the buffers `state_norm.mean/var` of the
    scripts' Agent, with `actor_activation` between the layers, so a copied script with another
    depth, width or activation (one of ACTIVATIONS) still evaluates."""

    def __init__(self, checkpoint: dict):
        super().__init__()
        weights = checkpoint["agent"]
        activation = checkpoint.get("actor_activation", "tanh")
        if activation not in ACTIVATIONS:
            raise ValueError(f"actor activation {activation!r} is not one of {sorted(ACTIVATIONS)}")
        linear = sorted({int(key.split(".")[1]) for key in weights if key.startswith("actor_mean.") and key.endswith(".weight")})
        if not linear:
            raise ValueError("the checkpoint's agent has no actor_mean layers")
        layers = []
        for position, index in enumerate(linear):
            out_features, in_features = weights[f"actor_mean.{index}.weight"].shape
            layer = nn.Linear(in_features, out_features)
            layer.load_state_dict({"weight": weights[f"actor_mean.{index}.weight"], "bias": weights[f"actor_mean.{index}.bias"]})
            layers.append(layer)
            if position < len(linear) - 1:
                layers.append(ACTIVATIONS[activation]())
        self.actor_mean = nn.Sequential(*layers)
        self.register_buffer("obs_mean", weights["state_norm.mean"].clone())
        self.register_buffer("obs_var", weights["state_norm.var"].clone())
        self.obs_clip = float(checkpoint.get("obs_clip", 10.0))
        self.eval()

    @torch.no_grad()
    def residual_mean(self, states: np.ndarray, base_actions: np.ndarray) -> np.ndarray:
        states = torch.as_tensor(np.asarray(states), dtype=torch.float32)
        normalized = (states - self.obs_mean.float()) / torch.sqrt(self.obs_var.float() + 1e-8)
        inputs = torch.cat([normalized.clamp(-self.obs_clip, self.obs_clip), torch.as_tensor(base_actions)], dim=-1)
        return self.actor_mean(inputs).numpy()
