"""The behaviour-cloning policy of the `il` base: an MLP that predicts chunks of actions.

train_bc.py trains it and writes the checkpoint; base_policies.ILBasePolicy loads it with
`load_bc_checkpoint`. The checkpoint holds only tensors, numbers and strings and is read with
`torch.load(..., weights_only=True)`, so loading one never runs code.
"""

from __future__ import annotations

import os
import pathlib

import numpy as np
import torch
import torch.nn as nn

from so101_env import ACTION_DIM

CHECKPOINT_FORMAT = "so101-bc-chunk"
CHECKPOINT_VERSION = 1
SIZE_LIMITS = {"chunk_size": (1, 100), "hidden_size": (1, 8192), "num_hidden_layers": (0, 32)}
"""the network sizes train_bc.py accepts, and that a checkpoint may declare (checked before the network is built)"""


class ChunkPolicy(nn.Module):
    """MLP: normalized state -> chunk of normalized actions; carries its normalization buffers."""

    def __init__(self, state_dim: int, chunk_size: int, hidden_size: int, num_hidden_layers: int):
        super().__init__()
        self.chunk_size = chunk_size
        layers, width = [], state_dim
        for _ in range(num_hidden_layers):
            layers += [nn.Linear(width, hidden_size), nn.GELU()]
            width = hidden_size
        layers.append(nn.Linear(width, chunk_size * ACTION_DIM))
        self.net = nn.Sequential(*layers)
        for name in ("state_mean", "state_std"):
            self.register_buffer(name, torch.zeros(state_dim))
        for name in ("action_mean", "action_std"):
            self.register_buffer(name, torch.zeros(ACTION_DIM))

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        """Raw states (B, D) -> standardized action chunks (B, chunk_size, 6)."""
        normalized = ((states - self.state_mean) / self.state_std).clamp(-10.0, 10.0)
        return self.net(normalized).view(-1, self.chunk_size, ACTION_DIM)

    @torch.no_grad()
    def predict(self, states: np.ndarray) -> np.ndarray:
        """States (B, D) -> action chunks (B, chunk_size, 6) in the env's normalized units."""
        chunks = self(torch.as_tensor(states, dtype=torch.float32)) * self.action_std + self.action_mean
        return chunks.clamp(-1.0, 1.0).numpy()


def load_bc_checkpoint(path: str | os.PathLike, state_dim: int) -> tuple[ChunkPolicy, dict]:
    """Load a checkpoint written by this script for states of size `state_dim`; ValueError if unusable."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"BC checkpoint {path} does not exist; train one with train_bc.py")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ValueError(f"BC checkpoint {path} cannot be read (truncated or corrupted file?): {error}") from error
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a BC checkpoint written by train_bc.py (format {CHECKPOINT_FORMAT!r})")
    if checkpoint.get("version") != CHECKPOINT_VERSION:
        raise ValueError(
            f"BC checkpoint {path} has format version {checkpoint.get('version')}; this code reads version "
            f"{CHECKPOINT_VERSION}: retrain it with this train_bc.py"
        )
    if checkpoint["state_dim"] != state_dim or checkpoint["action_dim"] != ACTION_DIM:
        raise ValueError(
            f"BC checkpoint {path} maps states of size {checkpoint['state_dim']} to actions of size "
            f"{checkpoint['action_dim']}; this environment needs {state_dim} -> {ACTION_DIM} "
            f"(a dataset without observation.environment_state gives a joints-only policy)"
        )
    wrong = [f"{name} {checkpoint.get(name)!r}" for name, (low, high) in SIZE_LIMITS.items()
             if not (type(checkpoint.get(name)) is int and low <= checkpoint[name] <= high)]
    if wrong:
        raise ValueError(f"BC checkpoint {path} declares {', '.join(wrong)}, outside what train_bc.py writes "
                         f"({SIZE_LIMITS}): it is damaged or was not written by train_bc.py")
    policy = ChunkPolicy(state_dim, checkpoint["chunk_size"], checkpoint["hidden_size"], checkpoint["num_hidden_layers"])
    try:
        policy.load_state_dict(checkpoint["model"])
    except (KeyError, RuntimeError, TypeError, AttributeError):
        raise ValueError(f"BC checkpoint {path}: its weights do not fit the network it declares; it is damaged") from None
    non_finite = [name for name, value in policy.state_dict().items() if not torch.isfinite(value).all()]
    if non_finite:
        raise ValueError(f"BC checkpoint {path} holds NaN or infinite values (in {', '.join(non_finite)}); retrain it")
    return policy.eval(), checkpoint
