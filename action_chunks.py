"""Open-loop execution of action chunks, per env: the bookkeeping shared by chunking bases (il, groot)."""

from __future__ import annotations

import numpy as np

from so101_env import ACTION_DIM


class ActionChunkQueue:
    """Per-env open-loop execution of action chunks: each env needs a new chunk every
    `chunk_steps` steps and right after a reset, so chunk bases query only those envs."""

    def __init__(self, num_envs: int, chunk_steps: int):
        self.chunk_steps = chunk_steps
        self.chunks = np.zeros((num_envs, chunk_steps, ACTION_DIM), dtype=np.float32)
        self.position = np.full(num_envs, chunk_steps)

    def reset(self, mask: np.ndarray | None = None) -> None:
        self.position[slice(None) if mask is None else np.asarray(mask, dtype=bool)] = self.chunk_steps

    def needs_chunk(self) -> np.ndarray:
        """Boolean mask of the envs whose chunk is used up."""
        return self.position >= self.chunk_steps

    def load(self, mask: np.ndarray, chunks: np.ndarray) -> None:
        """Start new chunks (k, >= chunk_steps, 6) for the k envs of `mask`."""
        self.chunks[mask] = chunks[:, : self.chunk_steps]
        self.position[mask] = 0

    def pop(self) -> np.ndarray:
        """The next action of every env's chunk, (N, 6)."""
        actions = self.chunks[np.arange(len(self.position)), self.position]
        self.position += 1
        return actions
