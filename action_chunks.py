"""Open-loop execution of action chunks, per env: the bookkeeping shared by chunking bases (il, groot)."""

from __future__ import annotations

import numpy as np

from so101_env import ACTION_DIM


class ActionChunkQueue:
    """Per-env open-loop execution of action chunks: each env needs a new chunk every
    `chunk_steps` steps and right after a reset, so chunk bases query only those envs.

    With `align=True` an env that starts a chunk between two boundaries (after a reset) runs it
    only until the next common boundary, a multiple of `chunk_steps` since the last full reset, so
    the envs come back in step and a batched model keeps getting full batches; without it, chunk
    boundaries drift apart as envs reset at different steps."""

    def __init__(self, num_envs: int, chunk_steps: int, align: bool = False):
        self.chunk_steps, self.align = chunk_steps, align
        self.chunks = np.zeros((num_envs, chunk_steps, ACTION_DIM), dtype=np.float32)
        self.position = np.full(num_envs, chunk_steps)
        self.end = np.full(num_envs, chunk_steps)  # where each env's current chunk runs out
        self.clock = 0  # steps since the last reset of all envs

    def reset(self, mask: np.ndarray | None = None) -> None:
        if mask is None:
            self.clock = 0
        envs = slice(None) if mask is None else np.asarray(mask, dtype=bool)
        self.position[envs] = self.end[envs]

    def needs_chunk(self) -> np.ndarray:
        """Boolean mask of the envs whose chunk is used up."""
        return self.position >= self.end

    def load(self, mask: np.ndarray, chunks: np.ndarray) -> None:
        """Start new chunks (k, >= chunk_steps, 6) for the k envs of `mask`."""
        self.chunks[mask] = chunks[:, : self.chunk_steps]
        self.position[mask] = 0
        self.end[mask] = self.chunk_steps - self.clock % self.chunk_steps if self.align else self.chunk_steps

    def shift_remaining(self, offsets: np.ndarray) -> None:
        """Add (N, 6) `offsets` to the steps of each env's chunk that have not been popped yet."""
        remaining = np.arange(self.chunk_steps)[None, :] >= self.position[:, None]
        self.chunks += remaining[:, :, None] * np.asarray(offsets, dtype=np.float32)[:, None, :]

    def pop(self) -> np.ndarray:
        """The next action of every env's chunk, (N, 6)."""
        actions = self.chunks[np.arange(len(self.position)), self.position]
        self.position += 1
        self.clock += 1
        return actions
