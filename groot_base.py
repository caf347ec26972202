"""GR00T N1.5 as a base policy: camera images + joint positions -> chunks of joint targets.

The adapter between the simulator and a GR00T checkpoint (groot_n15.py runs the model, locally or
behind an inference server): which checkpoint camera sees which sim camera, which state/action
keys hold which joints, the checkpoint's joint units, and the open-loop execution of its action
chunks. Importing this module registers the "groot" base with base_policies.make_base_policy.
groot_n15 (torch, transformers, ZeroMQ) and lerobot_dataset (pyarrow) are imported inside the
functions that need them, so importing this module stays cheap.
"""

from __future__ import annotations

import os
import time

import numpy as np

import so101_env
from action_chunks import ActionChunkQueue
from base_policies import BASE_POLICIES, QPOS, BasePolicy
from so101_env import ACTION_DIM, JOINT_NAMES


GROOT_DEFAULT_CHECKPOINT = "phospho-app/gr00t-paper_return-7w9itxzsox"
GROOT_DEFAULT_INSTRUCTION = "Slide the sheet of paper into the red tape square."
GROOT_BACKENDS = ("local", "server")


def groot_joint_units(low: np.ndarray, high: np.ndarray) -> str:
    """Joint units of a checkpoint from its (6,) per-joint statistics in JOINT_NAMES order
    (min and max over its state and action keys): one of lerobot_dataset.JOINT_UNITS.

    The rule of lerobot_dataset.units_from_extent (phosphobot records radians), and "range"
    (LeRobot's [-100, 100] arm / [0, 100] gripper, its default before 2026) where it cannot tell:
    degrees within +-100 look like "range", so pass `units` to the base to override."""
    from lerobot_dataset import units_from_extent

    return units_from_extent(np.maximum(np.abs(low), np.abs(high))) or "range"


def default_camera_map(checkpoint_cameras: list[str]) -> dict[str, str]:
    """Checkpoint camera -> sim camera: names containing "wrist" see the wrist camera, the others
    take the remaining sim cameras in order (top_view first), e.g. front -> top_view, wrist -> wrist,
    or image_cam_0 -> top_view, image_cam_1 -> wrist."""
    wrist = [name for name in checkpoint_cameras if "wrist" in name.lower()]
    others = [name for name in checkpoint_cameras if name not in wrist]
    taken = {"wrist"} if wrist else set()
    free = [camera for camera in so101_env.CAMERA_NAMES if camera not in taken]
    if len(wrist) > 1 or len(others) > len(free):
        raise ValueError(
            f"cannot guess which sim camera ({', '.join(so101_env.CAMERA_NAMES)}) each of the checkpoint's cameras "
            f"{checkpoint_cameras} is; pass camera_map, e.g. {{'{checkpoint_cameras[0]}': 'top_view', ...}}"
        )
    mapping = {name: "wrist" for name in wrist} | dict(zip(others, free))
    return {name: mapping[name] for name in checkpoint_cameras}


def default_joint_keys(dims: dict[str, int]) -> list[str]:
    """State/action keys in joint order: arm keys in the checkpoint's order, then gripper keys
    (e.g. [single_arm (5), gripper (1)], or [arm_0 (6)] / [action_space (6)] for phospho)."""
    return [key for key in dims if "gripper" not in key] + [key for key in dims if "gripper" in key]


def _check_joint_keys(kind: str, keys: list[str], dims: dict[str, int], all_required: bool) -> None:
    unknown = [key for key in keys if key not in dims]
    missing = [key for key in dims if key not in keys] if all_required else []
    if unknown or missing or sum(dims[key] for key in keys) != ACTION_DIM:
        scope = "all of them" if all_required else "some of them"
        raise ValueError(
            f"the checkpoint's {kind} keys (name: dims) are {dims}; {kind}_keys={keys} must name {scope}, "
            f"covering the {ACTION_DIM} joints {', '.join(JOINT_NAMES)} in order (unknown {unknown}, missing {missing})"
        )


def _resize_frames(frames: np.ndarray, width: int, height: int) -> np.ndarray:
    """uint8 (N, H, W, 3) -> (N, height, width, 3): Isaac servers insist on the training resolution."""
    if frames.shape[1:3] == (height, width):
        return frames
    import torch
    import torch.nn.functional as F

    images = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
    images = F.interpolate(images, size=(height, width), mode="bilinear", align_corners=False, antialias=True)
    return images.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


class GR00TBasePolicy(BasePolicy):
    """GR00T N1.5 (groot_n15.py) as a base: camera images + joint positions -> chunks of joint targets.

    One model serves all envs. Every `chunk_steps` steps (and right after its reset) an env needs a
    new 16-step chunk of absolute joint targets; the envs that need one are queried together in ONE
    batched call, and in between each env executes its chunk open-loop while the residual corrects
    every step. Each step turns the chunk's target into the env's normalized delta,
    `(target - q) / act_scale` clipped to [-1, 1].

    Because the targets are absolute, the next step steers back whatever a residual added. With
    `keep_corrections=True`, `executed(actions)` shifts the rest of the chunk by what the executed
    action added to the base's (times act_scale), so a correction holds until the next chunk, which
    GR00T plans from where the arm then is.

    `noise` is where the local model starts each chunk's flow (groot_n15.NOISE_MODES): "random", a
    Gaussian draw as in Isaac-GR00T, or "zero", the Gaussian's mean, which makes the base deterministic
    (on the small sim base, 84 % against 69 % alone over the same 100 episodes). A server draws its own
    noise (this project's: `python groot_n15.py serve --noise zero`).

    Callers render the cameras only when `images_needed()` has a True and pass them as
    `act(states, images={"top_view": (N, H, W, 3), "wrist": ...})` (see `base_policies.camera_images`).

    Backends: "local" loads the checkpoint (directory or hub id) in this process; "server" talks to
    an Isaac-GR00T inference server (or `python groot_n15.py serve`) at host:port, giving up after
    `timeout_s` (the server's API token, if it has one, comes from the environment variable
    GROOT_API_TOKEN). The mapping comes from the checkpoint's experiment_cfg/metadata.json (the server's
    get_metadata when it has one, else the checkpoint's file): cameras by `default_camera_map`,
    state/action keys by `default_joint_keys`, units by `groot_joint_units`; `camera_map`,
    `state_keys`, `action_keys` and `units` override them. `model` shares an already loaded backend
    (GR00TPolicy or GR00TClient) instead of loading another, e.g. for an evaluation base.

    Inference wall time per call is kept in `inference_seconds` (and `last_inference_seconds`), the
    envs per call in `inference_batch_sizes`; the training script logs and clears them.
    """

    name = "groot"
    needs_images = True

    def __init__(
        self,
        num_envs: int,
        act_scale: float = 0.02,
        checkpoint: str = GROOT_DEFAULT_CHECKPOINT,
        backend: str = "local",
        tokenizer: str | None = None,
        revision: str | None = None,
        dtype: str | None = None,
        device: str | None = None,
        host: str = "localhost",
        port: int = 5555,
        timeout_s: float = 15.0,
        chunk_steps: int | None = None,
        instruction: str = GROOT_DEFAULT_INSTRUCTION,
        camera_map: dict[str, str] | None = None,
        state_keys: list[str] | None = None,
        action_keys: list[str] | None = None,
        units: str | None = None,
        seed: int | None = None,
        keep_corrections: bool = False,
        noise: str = "random",
        model=None,
    ):
        super().__init__(num_envs, act_scale)
        import groot_n15

        if backend not in GROOT_BACKENDS:
            raise ValueError(f"unknown GR00T backend {backend!r}; choose 'local' (model in this process) or 'server' (inference server at host:port)")
        if noise not in groot_n15.NOISE_MODES:
            raise ValueError(f"GR00T noise must be one of {groot_n15.NOISE_MODES}, got {noise!r}")
        if dtype not in (None, "bfloat16", "float32"):
            raise ValueError(f"GR00T dtype must be bfloat16 or float32 (default: the checkpoint's), got {dtype!r}")
        self.checkpoint, self.backend, self.revision = str(checkpoint), backend, revision
        self.tokenizer = str(tokenizer or groot_n15.DEFAULT_TOKENIZER)
        self.dtype, self.host, self.port, self.timeout_s = dtype, host, port, timeout_s
        self.instruction, self.seed, self.keep_corrections, self.noise = instruction, seed, keep_corrections, noise
        if model is None and backend == "local":
            model = groot_n15.GR00TPolicy.from_pretrained(
                self.checkpoint, tokenizer=self.tokenizer, dtype=dtype, device=device, revision=revision, seed=seed,
                noise=noise,
            )
        elif model is None:
            # The token comes from the environment, never from a flag: flags are saved in checkpoints.
            model = groot_n15.GR00TClient(host, port, timeout_s, api_token=os.environ.get("GROOT_API_TOKEN") or None)
        self.model = model
        try:
            metadata = model.get_metadata()
        except RuntimeError:  # Isaac servers have no get_metadata endpoint: read the checkpoint's file
            metadata = groot_n15.load_metadata(groot_n15.resolve_checkpoint(self.checkpoint, revision, weights=False))
        chunk_steps = metadata.action_horizon if chunk_steps is None else chunk_steps  # default: the whole chunk
        if not 1 <= chunk_steps <= metadata.action_horizon:
            raise ValueError(f"chunk_steps must be within [1, {metadata.action_horizon}] (the checkpoint's chunk length), got {chunk_steps}")
        self.chunk_steps = chunk_steps
        self._map_checkpoint(metadata, camera_map, state_keys, action_keys, units)

        self.queue = ActionChunkQueue(num_envs, chunk_steps, align=True)  # full batches for the one model
        self.last_actions = np.zeros((num_envs, ACTION_DIM), dtype=np.float32)
        self.inference_seconds: list[float] = []
        self.inference_batch_sizes: list[int] = []
        self.last_inference_seconds = float("nan")

    def _map_checkpoint(self, metadata, camera_map, state_keys, action_keys, units) -> None:
        """Checkpoint cameras -> sim cameras, state/action keys -> joints, and joint units."""
        from lerobot_dataset import check_units

        self.language_key = metadata.language_key
        self.camera_map = dict(camera_map or default_camera_map(list(metadata.video)))
        missing = [camera for camera in metadata.video if camera not in self.camera_map]
        wrong = {k: v for k, v in self.camera_map.items() if v not in so101_env.CAMERA_NAMES or k not in metadata.video}
        if missing or wrong:
            raise ValueError(
                f"camera_map {self.camera_map} must map each checkpoint camera {list(metadata.video)} to a sim camera "
                f"{list(so101_env.CAMERA_NAMES)}; missing {missing}, wrong entries {wrong}"
            )
        # (width, height) of each checkpoint camera's training frames.
        self.image_sizes = {camera: tuple(info["resolution"]) for camera, info in metadata.video.items()}

        self.state_keys = list(state_keys or default_joint_keys(metadata.state_dims))
        self.action_keys = list(action_keys or default_joint_keys(metadata.action_dims))
        # The model needs every state key; the joints may come from a subset of its action keys.
        _check_joint_keys("state", self.state_keys, metadata.state_dims, all_required=True)
        _check_joint_keys("action", self.action_keys, metadata.action_dims, all_required=False)
        self.state_columns, start = {}, 0
        for key in self.state_keys:
            self.state_columns[key] = slice(start, start + metadata.state_dims[key])
            start += metadata.state_dims[key]

        def per_joint(kind: str, keys: list[str], statistic: str) -> np.ndarray:
            return np.concatenate([getattr(metadata, kind)[key][statistic] for key in keys])

        low = np.minimum(per_joint("state", self.state_keys, "min"), per_joint("action", self.action_keys, "min"))
        high = np.maximum(per_joint("state", self.state_keys, "max"), per_joint("action", self.action_keys, "max"))
        self.units = units or metadata.joint_units or groot_joint_units(low, high)
        check_units(self.units)

    def reset(self, mask: np.ndarray | None = None) -> None:
        self.queue.reset(mask)  # a reset env starts with a fresh chunk

    def images_needed(self) -> np.ndarray:
        return self.queue.needs_chunk()

    def act(self, states: np.ndarray, images: dict[str, np.ndarray] | None = None) -> np.ndarray:
        states = self._check_states(states)
        stale = self.queue.needs_chunk()
        if stale.any():
            self.queue.load(stale, self._query(states[stale], self._images_of(images, stale)))
        targets = self.queue.pop()
        self.last_actions = np.clip((targets - states[:, QPOS]) / self.act_scale, -1.0, 1.0).astype(np.float32)
        return self.last_actions

    def executed(self, actions: np.ndarray) -> None:
        if self.keep_corrections:
            self.queue.shift_remaining(self.act_scale * (np.asarray(actions) - self.last_actions))

    def _images_of(self, images: dict[str, np.ndarray] | None, envs: np.ndarray) -> dict[str, np.ndarray]:
        needed = sorted(set(self.camera_map.values()))
        if images is None or any(camera not in images for camera in needed):
            raise ValueError(
                f"the groot base needs the {needed} camera images of envs {np.flatnonzero(envs).tolist()} this step: "
                "render them when images_needed() says so and call act(states, images) (see base_policies.camera_images)"
            )
        for camera in needed:
            if images[camera].ndim != 4 or images[camera].shape[0] != self.num_envs:
                raise ValueError(f"images[{camera!r}] must be (num_envs={self.num_envs}, H, W, 3), got {images[camera].shape}")
        return {camera: images[camera][envs] for camera in needed}

    def _query(self, states: np.ndarray, images: dict[str, np.ndarray]) -> np.ndarray:
        """One batched model call: (k, 25) states + their images -> (k, chunk_steps, 6) targets in radians."""
        from lerobot_dataset import radians_to_units, units_to_radians

        joints = radians_to_units(states[:, QPOS], self.units)
        observation = {
            f"video.{camera}": _resize_frames(images[sim_camera], *self.image_sizes[camera])[:, None]
            for camera, sim_camera in self.camera_map.items()
        }
        observation |= {f"state.{key}": joints[:, None, columns] for key, columns in self.state_columns.items()}
        observation[self.language_key] = [[self.instruction]] * len(states)  # (B, 1), the batched layout

        start = time.perf_counter()
        actions = self.model.get_action(observation)
        self.last_inference_seconds = time.perf_counter() - start
        self.inference_seconds.append(self.last_inference_seconds)
        self.inference_batch_sizes.append(len(states))

        missing = [f"action.{key}" for key in self.action_keys if f"action.{key}" not in actions]
        if missing:
            raise KeyError(f"the GR00T {self.backend} backend returned {sorted(actions)}, without {missing}; check action_keys")
        chunk = np.concatenate([np.asarray(actions[f"action.{key}"], dtype=np.float64) for key in self.action_keys], axis=-1)
        if chunk.shape[0] != len(states) or chunk.shape[1] < self.chunk_steps:
            raise ValueError(f"expected action chunks of shape ({len(states)}, >={self.chunk_steps}, 6), got {chunk.shape}")
        return units_to_radians(chunk[:, : self.chunk_steps], self.units)

    def config(self) -> dict:
        # The resolved mapping and units are stored so a rebuild behaves the same; the device is
        # left to the machine that rebuilds (CUDA when present).
        return {
            **super().config(), "checkpoint": self.checkpoint, "backend": self.backend, "tokenizer": self.tokenizer,
            "revision": self.revision, "dtype": self.dtype, "host": self.host, "port": self.port,
            "timeout_s": self.timeout_s, "chunk_steps": self.chunk_steps, "instruction": self.instruction,
            "camera_map": self.camera_map, "state_keys": self.state_keys, "action_keys": self.action_keys,
            "units": self.units, "seed": self.seed, "keep_corrections": self.keep_corrections, "noise": self.noise,
        }


BASE_POLICIES["groot"] = GR00TBasePolicy
