"""GR00T N1.5 as a base policy: camera images + joint positions -> chunks of joint targets.

The adapter between the simulator and a GR00T checkpoint (groot_policy.py runs the model in this
process, groot_server.py's client talks to an inference server): which checkpoint camera sees which
sim camera, which state/action keys hold which joints, the checkpoint's joint units, and the
open-loop execution of its action chunks. Importing this module registers the "groot" base with
base_policies.make_base_policy. `GrootOptions` are the base's command-line options, shared by the
scripts that run it. Importing this module stays cheap: groot_policy (transformers) and groot_server
(ZeroMQ) are imported inside the functions that need them.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import time
from dataclasses import dataclass
from typing import Literal

import numpy as np

import so101_env
from action_chunks import ActionChunkQueue
from base_policies import BASE_POLICIES, QPOS, BasePolicy
from command_line import BadInput, option_problems, saved_option_problems
from groot_checkpoint import DEFAULT_TOKENIZER, load_metadata, resolve_checkpoint
from groot_model import NOISE_MODES
from joint_units import check_units, groot_joint_units, radians_to_units, units_to_radians
from so101_env import ACTION_DIM, JOINT_NAMES


GROOT_SIM_NAME = "checkpoints/groot_n15_small_so101_sim"
"""the committed GR00T checkpoint's place in the project: how residual checkpoints store it, the same on every machine"""
GROOT_SIM_CHECKPOINT = str(pathlib.Path(__file__).resolve().parent / GROOT_SIM_NAME)
"""the small GR00T N1.5 fine-tuned in this simulator, committed with the code: it runs on a CPU, offline"""
REAL_ROBOT_CHECKPOINT = "phospho-app/gr00t-paper_return-7w9itxzsox"
"""GR00T N1.5 (3B) fine-tuned on real SO-101 recordings of the task, on the Hugging Face hub (needs a GPU)"""
GROOT_DEFAULT_INSTRUCTION = "Slide the sheet of paper into the red tape square."
GROOT_BACKENDS = ("local", "server")


def stored_checkpoint_name(checkpoint: str) -> str:
    """How a residual checkpoint stores the GR00T checkpoint its base ran: the committed one by GROOT_SIM_NAME (an
    absolute path names nothing on another machine), any other as it was given."""
    same = os.path.realpath(checkpoint) == os.path.realpath(GROOT_SIM_CHECKPOINT)
    return GROOT_SIM_NAME if same else checkpoint


def checkpoint_on_this_machine(stored: str | None) -> str | None:
    """The GR00T checkpoint that a stored name (`stored_checkpoint_name`) names on this machine."""
    return GROOT_SIM_CHECKPOINT if stored == GROOT_SIM_NAME else stored


KWARG_NAMES = {"model": "checkpoint", "timeout": "timeout_s"}
"""GR00TBasePolicy's names of two options; the others keep theirs"""


@dataclass
class GrootOptions:
    """The GR00T base's command-line options (`--groot.model`, `--groot.backend`, ...), the same in
    every script that runs it; `base_kwargs()` turns them into GR00TBasePolicy's arguments. An option
    set to None is unset: it takes its default here, and in eval_policy.py, where every option starts
    unset, a residual checkpoint's stored setting first (`from_base_config`, `confirmed_by`)."""

    model: str | None = GROOT_SIM_CHECKPOINT
    """GR00T N1.5 checkpoint: directory or Hugging Face hub id (config.json, safetensors, experiment_cfg/metadata.json); the default, committed in checkpoints/, is the small one fine-tuned in this simulator (CPU, offline); the real robot's is phospho-app/gr00t-paper_return-7w9itxzsox (GPU)"""
    revision: str | None = None
    """hub branch/tag/commit of --groot.model (phospho uploads each training step as a branch)"""
    tokenizer: str | None = None
    """Eagle 2.5 tokenizer: directory or hub id (local backend); default: the checkpoint's own tokenizer/, else lerobot/eagle2hg-processor-groot-n1p5"""
    backend: Literal["local", "server"] | None = "local"
    """local: the model runs in this process; server: an inference server (Isaac-GR00T's or groot_server.py) at --groot.host:--groot.port"""
    host: str | None = "localhost"
    """host of the inference server (server backend)"""
    port: int | None = 5555
    """port of the inference server (server backend)"""
    timeout: float | None = 15.0
    """seconds to wait for the server's reply before failing (server backend)"""
    dtype: Literal["bfloat16", "float32"] | None = None
    """weight and compute dtype of the local model, bfloat16 (as Isaac) or float32; default: the checkpoint's (config.json torch_dtype)"""
    instruction: str | None = GROOT_DEFAULT_INSTRUCTION
    """language instruction sent with every query; use the task text of the fine-tuning dataset"""
    camera_map: dict[str, str] | None = None
    """checkpoint camera -> sim camera (top_view, wrist), e.g. `front top_view wrist wrist`; default from the metadata"""
    state_keys: list[str] | None = None
    """checkpoint state keys in joint order (shoulder_pan ... gripper); default from the metadata"""
    action_keys: list[str] | None = None
    """checkpoint action keys in joint order; default from the metadata"""
    units: Literal["radians", "degrees", "range"] | None = None
    """joint units of the checkpoint (range: LeRobot's [-100, 100]); default: what finetune_groot.py recorded in the checkpoint, else read from its statistics"""
    chunk_steps: int | None = None
    """steps of each action chunk executed open-loop before the env asks for a new one; default: the whole chunk (16 for N1.5). On the small sim base, 16 against 8: 72 % against 66 % alone, and half the GR00T calls"""
    noise: Literal["random", "zero"] | None = "random"
    """start of each chunk's flow in the local model: random (a fresh Gaussian draw per call, as Isaac-GR00T: 69 % alone on the small sim base) or zero (the Gaussian's mean: a deterministic base, 84 %); a server draws its own"""
    keep_corrections: bool | None = True
    """shift the rest of each chunk by the residual's executed correction, so the next step does not steer it back to GR00T's absolute target (a constant push moved a joint 2.8 degrees in 8 steps with it, 1.95 without)"""

    def problems(self) -> list[str]:
        """Messages for out-of-range numbers, named as the flags (--groot.port ...)."""
        return option_problems(self, within=dict(port=(1, 65535), chunk_steps=(1, 16)), above=dict(timeout=0.0),
                               at_most=dict(timeout=3600.0), prefix="groot.")

    def check_checkpoint(self) -> None:
        """Find --groot.model (on the hub: download its small files) before a script builds anything; when
        it cannot, BadInput: one line that says what to pass, and exit status 2. A server loads its own."""
        options = self.filled()
        if options.backend != "local":
            return
        try:
            resolve_checkpoint(options.model, options.revision, weights=False)
        except FileNotFoundError as error:
            raise BadInput(" ".join(str(error).split())) from None  # the hub's messages span lines

    @classmethod
    def unset(cls) -> GrootOptions:
        """Every option unset (None)."""
        return cls(**{field.name: None for field in dataclasses.fields(cls)})

    def given(self) -> dict:
        """The options that are set (not None), by name."""
        return {name: value for name, value in vars(self).items() if value is not None}

    def filled(self) -> GrootOptions:
        """These options with the unset ones at their defaults."""
        return dataclasses.replace(GrootOptions(), **self.given())

    def base_kwargs(self) -> dict:
        """GR00TBasePolicy keyword arguments; unset options take their defaults."""
        return {KWARG_NAMES.get(name, name): value for name, value in vars(self.filled()).items()}

    def portable(self) -> GrootOptions:
        """These options as a checkpoint stores them: the committed GR00T checkpoint by its name in the project."""
        return dataclasses.replace(self, model=self.model and stored_checkpoint_name(self.model))

    @classmethod
    def from_base_config(cls, config: dict) -> GrootOptions:
        """The options a residual checkpoint's GR00T base ran with, from its stored `GR00TBasePolicy.config()`, each
        checked to be of its option's type (a file may hold anything); what the config lacks is unset. ValueError."""
        options = {field.name: config[KWARG_NAMES.get(field.name, field.name)] for field in dataclasses.fields(cls)
                   if KWARG_NAMES.get(field.name, field.name) in config}
        problems = saved_option_problems(options, cls(), "groot.")
        if problems:
            raise ValueError("; ".join(problems))
        return dataclasses.replace(cls.unset(), **options)

    def overridden_by(self, options: GrootOptions) -> GrootOptions:
        """These options with those set in `options` in their place; another model drops the revision, a branch of
        this one's."""
        other_model = options.model not in (None, self.model) and options.revision is None
        return dataclasses.replace(self, **options.given(), **({"revision": None} if other_model else {}))

    def confirmed_by(self, command_line: GrootOptions, doing: str) -> GrootOptions:
        """These settings, read from a file (a residual checkpoint's base, a resumed run's options), as this machine
        runs them (the committed checkpoint's name resolved), if all in them that reaches beyond this machine is
        named on `command_line` too: a server (backend, host and port: where GROOT_API_TOKEN goes), and a GR00T
        checkpoint or tokenizer that is not a directory here (a hub id is downloaded). A file never chooses an
        endpoint or a download. ValueError otherwise, with the flags to pass to `doing` (e.g. "evaluate it")."""
        settings = dataclasses.replace(self, model=checkpoint_on_this_machine(self.model)).filled()
        named, problems = command_line.filled(), []
        if settings.backend == "server" and (named.backend, named.host, named.port) != ("server", settings.host, settings.port):
            problems.append(f"it was trained on a GR00T server at {settings.host}:{settings.port}; pass --groot.backend "
                            f"server --groot.host {settings.host} --groot.port {settings.port} to {doing} against one")
        if not pathlib.Path(settings.model).expanduser().is_dir() and settings.model != named.model:
            if pathlib.Path(settings.model).is_absolute() or settings.model.startswith((".", "~")):
                problems.append(f"its GR00T checkpoint {settings.model} is not on this machine; pass --groot.model with "
                                f"its directory to {doing}")
            else:
                revision = f" --groot.revision {settings.revision}" if settings.revision else ""
                problems.append(f"its GR00T checkpoint {settings.model} is a Hugging Face hub id, downloaded only when "
                                f"asked; pass --groot.model {settings.model}{revision} to {doing} with that checkpoint")
        tokenizer = settings.tokenizer
        if tokenizer not in (None, DEFAULT_TOKENIZER, named.tokenizer) and not pathlib.Path(tokenizer).expanduser().is_dir():
            problems.append(f"its GR00T tokenizer {tokenizer} is not a directory here (a hub id is downloaded only when "
                            f"asked); pass --groot.tokenizer {tokenizer} to {doing} with it")
        if problems:
            raise ValueError("; ".join(problems))
        return settings


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
    """GR00T N1.5 as a base: camera images + joint positions -> chunks of joint targets.

    One model serves all envs. Every `chunk_steps` steps (and right after its reset) an env needs a
    new 16-step chunk of absolute joint targets; the envs that need one are queried together in ONE
    batched call, and in between each env executes its chunk open-loop while the residual corrects
    every step. Each step turns the chunk's target into the env's normalized delta,
    `(target - q) / act_scale` clipped to [-1, 1].

    Because the targets are absolute, the next step steers back whatever a residual added. With
    `keep_corrections=True`, `executed(actions)` shifts the rest of the chunk by what the executed
    action added to the base's (times act_scale), so a correction holds until the next chunk, which
    GR00T plans from where the arm then is.

    `noise` is where the local model starts each chunk's flow (NOISE_MODES): "random", a
    Gaussian draw as in Isaac-GR00T, or "zero", the Gaussian's mean, which makes the base deterministic
    (on the small sim base, 84 % against 69 % alone over the same 100 episodes). A server draws its own
    noise (this project's: `python serve_groot.py CHECKPOINT --noise zero`). A caller can also choose the
    start itself, per env and chunk: `act(states, images, flow_start)` (a noise policy, ppo_noise_groot.py;
    local backend only).

    Callers render the cameras only when `images_needed()` has a True and pass them as
    `act(states, images={"top_view": (N, H, W, 3), "wrist": ...})` (see `base_policies.camera_images`).

    Backends: "local" loads the checkpoint (directory or hub id) in this process; "server" talks to
    an Isaac-GR00T inference server (or `python serve_groot.py CHECKPOINT`) at host:port, giving up after
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
        checkpoint: str = GROOT_SIM_CHECKPOINT,
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
        if backend not in GROOT_BACKENDS:
            raise ValueError(f"unknown GR00T backend {backend!r}; choose 'local' (model in this process) or 'server' (inference server at host:port)")
        if noise not in NOISE_MODES:
            raise ValueError(f"GR00T noise must be one of {NOISE_MODES}, got {noise!r}")
        if dtype not in (None, "bfloat16", "float32"):
            raise ValueError(f"GR00T dtype must be bfloat16 or float32 (default: the checkpoint's), got {dtype!r}")
        self.checkpoint, self.backend, self.revision = str(checkpoint), backend, revision
        self.tokenizer = str(tokenizer or DEFAULT_TOKENIZER)
        self.dtype, self.host, self.port, self.timeout_s = dtype, host, port, timeout_s
        self.instruction, self.seed, self.keep_corrections, self.noise = instruction, seed, keep_corrections, noise
        if model is None and backend == "local":
            from groot_policy import GR00TPolicy  # brings transformers

            model = GR00TPolicy.from_pretrained(
                self.checkpoint, tokenizer=self.tokenizer, dtype=dtype, device=device, revision=revision, seed=seed,
                noise=noise,
            )
        elif model is None:
            from groot_server import GR00TClient  # brings ZeroMQ

            # The token comes from the environment, never from a flag: flags are saved in checkpoints.
            model = GR00TClient(host, port, timeout_s, api_token=os.environ.get("GROOT_API_TOKEN") or None)
        self.model = model
        try:
            metadata = model.get_metadata()
        except RuntimeError:  # Isaac servers have no get_metadata endpoint: read the checkpoint's file
            metadata = load_metadata(resolve_checkpoint(self.checkpoint, revision, weights=False))
        chunk_steps = metadata.action_horizon if chunk_steps is None else chunk_steps  # default: the whole chunk
        if not 1 <= chunk_steps <= metadata.action_horizon:
            raise ValueError(f"chunk_steps must be within [1, {metadata.action_horizon}] (the checkpoint's chunk length), got {chunk_steps}")
        self.chunk_steps, self.action_horizon = chunk_steps, metadata.action_horizon
        self._map_checkpoint(metadata, camera_map, state_keys, action_keys, units)

        self.queue = ActionChunkQueue(num_envs, chunk_steps, align=True)  # full batches for the one model
        self.last_actions = np.zeros((num_envs, ACTION_DIM), dtype=np.float32)
        self.inference_seconds: list[float] = []
        self.inference_batch_sizes: list[int] = []
        self.last_inference_seconds = float("nan")

    def _map_checkpoint(self, metadata, camera_map, state_keys, action_keys, units) -> None:
        """Checkpoint cameras -> sim cameras, state/action keys -> joints, and joint units."""
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
        joint_columns, start = {}, 0
        for key in self.action_keys:
            joint_columns[key] = slice(start, start + metadata.action_dims[key])
            start += metadata.action_dims[key]
        # The model's action keys in its order, with their joints (None: a key no joint comes from), for flow starts.
        self.model_action_columns = [(joint_columns.get(key), width) for key, width in metadata.action_dims.items()]

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

    def act(self, states: np.ndarray, images: dict[str, np.ndarray] | None = None,
            flow_start: np.ndarray | None = None) -> np.ndarray:
        """`flow_start` (num_envs, action_horizon, 6), when given: where the flow of each env's next chunk starts
        (see `model_flow_starts`); only the rows of the envs that need a chunk this step are used."""
        states = self._check_states(states)
        stale = self.queue.needs_chunk()
        if stale.any():
            starts = None if flow_start is None else self.model_flow_starts(flow_start)[stale]
            self.queue.load(stale, self._query(states[stale], self._images_of(images, stale), starts))
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

    def model_flow_starts(self, flow_start: np.ndarray) -> np.ndarray:
        """Flow starts (num_envs, action_horizon, 6) in joint order, in the model's normalized action space (the
        Gaussian the flow starts from: zeros are noise "zero") -> (num_envs, action_horizon, D) in the order of the
        model's action keys, zeros for a key no joint comes from. ValueError for a wrong shape, a value that is
        not finite, or the server backend."""
        if self.backend != "local":
            raise ValueError("the GR00T server backend cannot start the flow at a given point (the inference protocol "
                             "has no field for it): run the model in this process (--groot.backend local)")
        flow_start = np.asarray(flow_start, dtype=np.float32)
        if flow_start.shape != (self.num_envs, self.action_horizon, ACTION_DIM) or not np.isfinite(flow_start).all():
            raise ValueError(f"flow_start must be finite, of shape (num_envs, action_horizon, {ACTION_DIM}) = "
                             f"{(self.num_envs, self.action_horizon, ACTION_DIM)}, got {flow_start.shape}")
        return np.concatenate([flow_start[..., columns] if columns is not None else
                               np.zeros(flow_start.shape[:-1] + (width,), np.float32)
                               for columns, width in self.model_action_columns], axis=-1)

    def _query(self, states: np.ndarray, images: dict[str, np.ndarray], flow_starts: np.ndarray | None = None) -> np.ndarray:
        """One batched model call: (k, 25) states + their images (+ the flow starts of their chunks, in the model's
        order) -> (k, chunk_steps, 6) targets in radians."""
        joints = radians_to_units(states[:, QPOS], self.units)
        observation = {
            f"video.{camera}": _resize_frames(images[sim_camera], *self.image_sizes[camera])[:, None]
            for camera, sim_camera in self.camera_map.items()
        }
        observation |= {f"state.{key}": joints[:, None, columns] for key, columns in self.state_columns.items()}
        observation[self.language_key] = [[self.instruction]] * len(states)  # (B, 1), the batched layout

        start = time.perf_counter()
        steering = {} if flow_starts is None else {"initial_noise": flow_starts}  # a server's client takes none
        actions = self.model.get_action(observation, **steering)
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
            **super().config(), "checkpoint": stored_checkpoint_name(self.checkpoint), "backend": self.backend,
            "tokenizer": self.tokenizer,
            "revision": self.revision, "dtype": self.dtype, "host": self.host, "port": self.port,
            "timeout_s": self.timeout_s, "chunk_steps": self.chunk_steps, "instruction": self.instruction,
            "camera_map": self.camera_map, "state_keys": self.state_keys, "action_keys": self.action_keys,
            "units": self.units, "seed": self.seed, "keep_corrections": self.keep_corrections, "noise": self.noise,
        }


BASE_POLICIES["groot"] = GR00TBasePolicy
