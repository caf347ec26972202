"""Fine-tune GR00T N1.5 on LeRobot datasets (one file, in the style of nanoGPT's train.py).

    python record_demos.py --cameras --n-episodes 200 --output-dir runs/demos/jacobian_cameras
    # a small GR00T N1.5-architecture model (every part shrunk) from scratch: checkpoints/groot_n15_small_so101_sim
    # took this for 7 min on one GPU, then 3.5 min more at lr 3e-4 (README); on a 2-core CPU, expect hours
    python finetune_groot.py --dataset runs/demos/jacobian_cameras --batch-size 128 --learning-rate 1e-3 --no-augment \
        --max-minutes 7 --max-steps 1000000
    # GPU: fine-tune NVIDIA's base model with Isaac's defaults (estimated ~30 GB of GPU memory at batch 32, see the README)
    python finetune_groot.py --dataset runs/demos/jacobian_cameras --init-from nvidia/GR00T-N1.5-3B --batch-size 32
    # then, like any Isaac-format checkpoint:
    python eval_policy.py --base-policy groot --groot.model runs/<run>/checkpoint --n-episodes 50

Top to bottom: `Args`; reading the datasets (meta/modality.json checked against info.json and info.json
against the stored data first, so a dataset that does not add up is refused in one line before anything
is trained or written; each episode's videos decoded once into one frame table, on the GPU when it fits)
and their statistics; the model (`--init-from scratch-small`, or an Isaac-format checkpoint directory or
hub id), whose trained parts follow Isaac's four tune flags when fine-tuning (from scratch every part
trains); then the loop: sample (frame, 16-step action chunk) pairs, one AdamW step on the
flow-matching loss (groot_model.FlowMatchingActionHead.loss), print the loss now and then, and write
the checkpoint.

The recipe is Isaac-GR00T's (scripts/gr00t_finetune.py with the SO-100 data config): state and
action groups from meta/modality.json, min-max normalised to [-1, 1] with the statistics of all the
datasets, zero-padded to the model's 64 state / 32 action dims; the action chunk is the absolute
targets of steps t..t+15, with a mask over the real action dims (and, by default, over the steps past
the episode's end: Isaac repeats the last step instead, `--action-padding repeat`); images get a
random 95 % crop and colour jitter (groot_policy.augment_images); the loss is flow matching with
t = (0.999 - s) / 0.999, s ~ Beta(1.5, 1); AdamW (betas 0.95, 0.999; weight decay 1e-5 except on
biases and norms), lr 1e-4 with 5 % linear warm-up then cosine decay to 0, gradients clipped at norm
1, bf16 autocast and TF32 on a GPU. Frames are drawn uniformly from all datasets.

The checkpoint is Isaac's on-disk format (groot_checkpoint.save_checkpoint): config.json, safetensors,
experiment_cfg/metadata.json (statistics and modalities, embodiment `new_embodiment`), plus
experiment_cfg/finetune_groot.json (our provenance) and the tokenizer it was trained with in
tokenizer/ (the small model's byte-level one, or Eagle's), which our loader prefers to downloading
one; Isaac's loader ignores both. It is written into a temporary sibling directory and renamed into place,
so a crash never leaves half a checkpoint. The output directory must be new or empty; one holding
a checkpoint of this script is replaced only with --overwrite; anything else is refused untouched.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import pathlib
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import tyro
from torch.utils.tensorboard import SummaryWriter

import groot_checkpoint
import groot_model
import groot_policy
from command_line import BadInput, option_problems
from groot_checkpoint import IMAGE_CONTEXT_TOKEN
from groot_model import EMBODIMENT_TAG_TO_ID, GR00TN15
from lerobot_dataset import decode_video, gr00t_modality, read_frames, read_info, read_json, read_tasks, units_shown, video_segment
from run_dirs import create_run_dir, refuse_mount_point, replace_directory, unique_sibling
from stop_signals import StopSignals, close_writer


@dataclass
class Args:
    dataset: list[str] = field(default_factory=lambda: ["runs/demos/jacobian_cameras"])
    """LeRobot v2.1 or v3.0 dataset directories with camera videos (record_demos.py --cameras, or a LeRobot recording); several are mixed.
    GR00T's keys come from meta/modality.json, or without one from the features (SO-100/SO-101 joint groups, every camera)"""
    init_from: str = "scratch-small"
    """"scratch-small": a small N1.5-architecture model from random weights (CPU-sized); or an Isaac-format checkpoint directory or hub id to fine-tune, e.g. nvidia/GR00T-N1.5-3B"""
    revision: str | None = None
    """hub branch, tag or commit of --init-from"""
    tokenizer: str | None = None
    """tokenizer directory or hub id; default: the checkpoint's own tokenizer/, else the Eagle 2.5 one (scratch-small makes its own)"""
    output_dir: str | None = None
    """checkpoint directory to write; default runs/<run>/checkpoint"""
    overwrite: bool = False
    """replace --output-dir if it holds a checkpoint written by this script (nothing else is ever replaced)"""
    exp_name: str = os.path.basename(__file__)[: -len(".py")]
    """name of this experiment (part of the run directory name)"""
    run_dir: str = "runs"
    """directory that holds one sub-directory per run (TensorBoard logs, default checkpoint)"""
    seed: int = 1
    """seed of the initialization, the batches, the augmentation and the flow-matching draws"""
    embodiment_tag: str = "new_embodiment"
    """embodiment the datasets are trained as (its slice of the per-embodiment layers, its metadata.json entry)"""
    instruction: str | None = None
    """language instruction for every frame; default: each frame's task from the dataset (tasks.jsonl)"""
    tune_llm: bool = False
    """fine-tuning: train the Qwen3 language model (Isaac's default: frozen); scratch-small trains every part"""
    tune_visual: bool = False
    """fine-tuning: train the SigLIP vision tower and its mlp1 projector (Isaac's default: frozen)"""
    tune_projector: bool = True
    """fine-tuning: train the action head's state/action encoders, action decoder and position embedding"""
    tune_diffusion_model: bool = True
    """fine-tuning: train the DiT"""
    max_steps: int = 10_000
    """optimizer steps (Isaac's default)"""
    max_minutes: float | None = None
    """also stop after this many minutes of training (reading the data not counted); the learning-rate schedule then
    runs on whichever of steps and minutes is further along, so a time-boxed run still warms up and decays to 0"""
    batch_size: int = 32
    """(frame, action chunk) samples per step"""
    learning_rate: float = 1e-4
    """peak learning rate of AdamW"""
    weight_decay: float = 1e-5
    """AdamW weight decay (not on biases and norms)"""
    adam_beta1: float = 0.95
    """AdamW beta1 (Isaac's)"""
    adam_beta2: float = 0.999
    """AdamW beta2"""
    warmup_ratio: float = 0.05
    """fraction of the steps with a linear learning-rate warm-up; cosine decay to 0 after it"""
    max_grad_norm: float = 1.0
    """clip the gradient norm (0 disables)"""
    action_padding: str = "mask"
    """chunk steps past an episode's end: "mask" (zero and left out of the loss) or "repeat" (the last target, as Isaac)"""
    augment: bool = True
    """Isaac's train-time image augmentation (random 95 % crop, colour jitter); off: the inference centre crop"""
    device: str | None = None
    """torch device; default cuda when available, else cpu"""
    bf16: bool = True
    """bf16 autocast on a CUDA device (float32 weights and optimizer, as Isaac); ignored on the CPU"""
    torch_threads: int | None = None
    """torch intra-op threads on the CPU (default: torch's choice)"""
    log_every: int = 10
    """print and log the loss every this many steps"""
    save_every: int = 0
    """also write the checkpoint every this many steps (0: only at the end)"""


SMALL_MODEL = {
    # Every part of GR00T N1.5 shrunk so that one batched 4-env inference takes ~0.1-0.15 s on a busy
    # 2-core CPU: SigLIP at 224 px with 32 px patches (49 tokens per image), 3 Qwen3 layers, a 4-block DiT.
    "vision_config": dict(hidden_size=96, intermediate_size=384, num_hidden_layers=4, num_attention_heads=3, patch_size=32),
    "text_config": dict(vocab_size=groot_checkpoint.BYTE_TOKENIZER_VOCAB_SIZE, hidden_size=96, intermediate_size=288,
                        num_hidden_layers=3, num_attention_heads=3, num_key_value_heads=1, head_dim=32),
    "select_layer": 3,
    "action_head": dict(backbone_embedding_dim=96, hidden_size=96, input_embedding_dim=96),
    "dit": dict(num_layers=4, num_attention_heads=3, attention_head_dim=32, cross_attention_dim=96, output_dim=96),
    "vl_self_attention": dict(num_layers=1, num_attention_heads=3, attention_head_dim=32),
}
PROVENANCE_FILE = groot_checkpoint.TRAINING_RECORD
"""written into every checkpoint of this script: how it was made (with the joint units the groot base reads), and the mark --overwrite looks for"""
ACTION_PADDINGS = ("mask", "repeat")


def small_config() -> dict:
    """config.json of the small model: N1.5's, with the sizes of SMALL_MODEL (the loader reads
    backbone_cfg.vision_config / text_config; Isaac's own loader does not, so only ours reads it)."""
    config = copy.deepcopy(groot_model.N15_CONFIG)
    config["torch_dtype"] = "float32"
    config["backbone_cfg"] |= {"select_layer": SMALL_MODEL["select_layer"], "vision_config": SMALL_MODEL["vision_config"],
                               "text_config": SMALL_MODEL["text_config"]}
    head = config["action_head_cfg"]
    head |= SMALL_MODEL["action_head"]
    head["diffusion_model_cfg"] |= SMALL_MODEL["dit"]
    head["vl_self_attention_cfg"] |= SMALL_MODEL["vl_self_attention"]
    return config


def small_model() -> GR00TN15:
    """The small configuration with fresh weights, initialized as Isaac does except the per-embodiment
    linear layers of the state/action encoders and the action decoder."""
    model = GR00TN15(small_config())
    # Isaac initializes these two embeddings at std 0.02 (nn.Embedding's default is 1).
    torch.nn.init.normal_(model.action_head.position_embedding.weight, std=0.02)
    torch.nn.init.normal_(model.action_head.future_tokens.weight, std=0.02)
    # Isaac's std 0.02 for these (made for a head trained on a pretrained backbone) leaves a head trained
    # from scratch nearly blind to the state: on one fixed batch of 32 sim frames its loss was 0.68 after
    # 300 steps and its chunks 5-47 degrees off; with a linear layer's usual scale, 1/sqrt(fan-in),
    # 0.06 and 2-8 degrees (the action head alone, on the fixed features of an untrained backbone).
    for module in model.modules():
        if isinstance(module, groot_model.CategorySpecificLinear):
            torch.nn.init.normal_(module.W, std=module.W.shape[1] ** -0.5)
    return model


# ---------------------------------------------------------------------------------------------
# Data: LeRobot v2.1 or v3.0 episodes with videos, and GR00T's meta/modality.json.
# ---------------------------------------------------------------------------------------------


@dataclass
class Dataset:
    """One LeRobot dataset read for GR00T: per episode the state and action groups concatenated in
    modality.json order (dataset units), each frame's instruction, and the decoded camera frames."""

    root: pathlib.Path
    state_groups: dict[str, tuple[str, int, int]]
    """group name -> (parquet column, start, end), e.g. single_arm -> (observation.state, 0, 5)"""
    action_groups: dict[str, tuple[str, int, int]]
    cameras: dict[str, str]
    """camera name (video.<name>) -> video feature, e.g. front -> observation.images.top_view (top_view in
    datasets record_demos.py wrote before it took the names of NVIDIA's so100_dualcam config)"""
    resolution: dict[str, list[int]]
    """camera name -> [width, height]"""
    fps: float
    units: str | None
    """so101_sim.joint_units of datasets record_demos.py wrote, else (without a modality.json) the units the joints
    show (lerobot_dataset.units_shown: a LeRobot recording of so101_mujoco with --robot.task_state=true), else None"""
    states: list[np.ndarray] = field(default_factory=list)
    actions: list[np.ndarray] = field(default_factory=list)
    instructions: list[list[str]] = field(default_factory=list)
    frames: list[dict[str, np.ndarray]] = field(default_factory=list)

    def layout(self) -> tuple:
        """What must agree between mixed datasets: groups with their widths, cameras in order with their
        resolution (see `same_cameras` for their names)."""
        return ({k: e - s for k, (_, s, e) in self.state_groups.items()}, {k: e - s for k, (_, s, e) in self.action_groups.items()},
                [tuple(v) for v in self.resolution.values()])

    def same_cameras(self, other: "Dataset") -> bool:
        """Whether `other`'s cameras are these, in order: each of the same name or reading the same video
        feature (record_demos.py's observation.images.top_view is video.front now, video.top_view before)."""
        return len(self.cameras) == len(other.cameras) and all(
            name == other_name or key == other_key
            for (name, key), (other_name, other_key) in zip(self.cameras.items(), other.cameras.items()))


def load_dataset(root: str | pathlib.Path, instruction: str | None) -> Dataset:
    """Read a dataset for GR00T: its meta/modality.json (or, without one, the modality `gr00t_modality`
    derives from info.json's features, as for a LeRobot v3.0 recording), checked against info.json before
    anything else is read, then the frames (parquet) and every episode's videos (decoded once).
    FileNotFoundError or ValueError saying what is missing or wrong."""
    root = pathlib.Path(root)
    info = read_info(root)
    modality_path = root / "meta" / "modality.json"
    derived = not modality_path.is_file()
    try:
        if derived:
            modality_path = f"{root} (no meta/modality.json; GR00T's keys derived from its features)"
            modality = gr00t_modality(info["features"])
        else:
            modality = read_json(modality_path)
        state_groups, action_groups, cameras, task_key = parse_modality(modality, info["features"])
    except ValueError as error:
        raise ValueError(f"{modality_path}: {error}") from None
    resolution = {name: info["features"][key]["shape"][1::-1] for name, key in cameras.items()}  # [width, height]
    columns = sorted({key for key, _, _ in [*state_groups.values(), *action_groups.values()]}
                     | {"episode_index", "frame_index"} | ({task_key} if task_key else set()))
    arrays = read_frames(root, columns)
    tasks = read_tasks(root, info) if task_key else {}

    units = info.get("so101_sim", {}).get("joint_units")
    if units is None and derived:  # the features are the SO-101's joints (then the task state): their values may show the units
        units = units_shown(arrays["observation.state"], info["features"]["observation.state"].get("names"), arrays["action"])
    dataset = Dataset(root, state_groups, action_groups, cameras, resolution, float(info.get("fps", 30)), units)
    episode_index = arrays["episode_index"].astype(np.int64)
    starts = np.flatnonzero(np.r_[True, episode_index[1:] != episode_index[:-1]])
    ends = np.r_[starts[1:], len(episode_index)]
    # Each video is one ffmpeg process: decode several at once (the threads only wait on them).
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        videos = {}
        for start, end in zip(starts, ends):
            for name, key in cameras.items():
                path, seek, _ = video_segment(root, int(episode_index[start]), key)
                videos[start, name] = pool.submit(decode_video, path, seek, end - start)
    for start, end in zip(starts, ends):
        dataset.states.append(np.concatenate([arrays[key][start:end, a:b] for key, a, b in state_groups.values()], axis=1))
        dataset.actions.append(np.concatenate([arrays[key][start:end, a:b] for key, a, b in action_groups.values()], axis=1))
        if instruction is not None or not task_key:
            # Isaac's default instruction when a dataset has no annotation.
            texts = [instruction or groot_policy.DEFAULT_INSTRUCTION] * (end - start)
        else:
            texts = [tasks.get(int(i), groot_policy.DEFAULT_INSTRUCTION) for i in arrays[task_key][start:end]]
        dataset.instructions.append(texts)
        frames = {}
        for name, key in cameras.items():
            video = videos[start, name].result()
            if list(video.shape[2:0:-1]) != resolution[name]:
                raise ValueError(f"{root}: episode {episode_index[start]}'s {key} video is {video.shape[2]} x {video.shape[1]} pixels, "
                                 f"but info.json declares {resolution[name][0]} x {resolution[name][1]}")
            if len(video) < end - start:
                raise ValueError(f"{root}: episode {episode_index[start]} has {end - start} frames but its {key} video {len(video)}")
            frames[name] = video
        dataset.frames.append(frames)
    return dataset


def parse_modality(modality, features: dict) -> tuple[dict, dict, dict, str | None]:
    """The state groups, action groups, cameras and task column of a meta/modality.json, checked against
    info.json's features: every group a slice 0 <= start < end <= width of a vector feature, the groups of
    a kind disjoint, every camera a video feature, the task column a feature. ValueError says what is wrong."""
    def entries(kind: str) -> dict[str, dict]:
        value = modality.get(kind, {}) if isinstance(modality, dict) else None
        if not isinstance(value, dict) or not all(isinstance(entry, dict) for entry in value.values()):
            raise ValueError(f"{kind} is not a mapping of names to entries")
        return value

    def groups(kind: str, default_key: str) -> dict[str, tuple[str, int, int]]:
        parsed = {}
        for name, group in entries(kind).items():
            key, start, end = group.get("original_key", default_key), group.get("start"), group.get("end")
            shape = features[key]["shape"] if isinstance(key, str) and key in features else []
            if len(shape) != 1 or features[key].get("dtype") in ("video", "image"):
                raise ValueError(f"{kind}.{name} reads {key!r}, which info.json declares no vector feature for")
            integers = all(isinstance(n, int) and not isinstance(n, bool) for n in (start, end))
            if not (integers and 0 <= start < end <= shape[0]):
                raise ValueError(f"{kind}.{name} is [{start}, {end}) of {key}, which holds {shape[0]} "
                                 f"values; a group needs integers 0 <= start < end <= {shape[0]}")
            overlapping = [other for other, (k, a, b) in parsed.items() if k == key and start < b and a < end]
            if overlapping:
                raise ValueError(f"{kind}.{name} and {kind}.{overlapping[0]} overlap in {key}")
            parsed[name] = (key, start, end)
        if not parsed:
            raise ValueError(f"it names no {kind} group")
        return parsed

    cameras = {name: entry.get("original_key", f"observation.images.{name}") for name, entry in entries("video").items()}
    for name, key in cameras.items():
        if not (isinstance(key, str) and features.get(key, {}).get("dtype") == "video"):
            raise ValueError(f"video.{name} reads {key!r}, which info.json declares no video feature for")
    if not cameras:
        raise ValueError("it names no video; GR00T needs camera images (record with --cameras)")
    task_key = entries("annotation").get("human.task_description", {}).get("original_key")
    if task_key is not None and not (isinstance(task_key, str) and task_key in features):
        raise ValueError(f"annotation.human.task_description reads {task_key!r}, which info.json does not declare")
    return groups("state", "observation.state"), groups("action", "action"), cameras, task_key


def statistics(values: np.ndarray) -> dict[str, list[float]]:
    """Isaac's per-dimension statistics of (N, D) values: min, max, mean, std, q01, q99."""
    return {"min": values.min(0).tolist(), "max": values.max(0).tolist(), "mean": values.mean(0).tolist(),
            "std": values.std(0).tolist(), "q01": np.quantile(values, 0.01, axis=0).tolist(),
            "q99": np.quantile(values, 0.99, axis=0).tolist()}


def build_metadata(datasets: list[Dataset], embodiment_tag: str) -> dict:
    """experiment_cfg/metadata.json: statistics of every state/action group over all the datasets' frames,
    and the modalities (camera resolutions, group shapes), in Isaac's DatasetMetadata layout."""
    first = datasets[0]

    def group_stats(kind: str) -> dict:
        groups = getattr(first, f"{kind}_groups")
        values = np.concatenate([v for d in datasets for v in getattr(d, f"{kind}s")])
        columns = np.cumsum([0] + [end - start for _, start, end in groups.values()])
        return {name: statistics(values[:, columns[i]:columns[i + 1]]) for i, name in enumerate(groups)}

    def shapes(kind: str) -> dict:
        return {name: {"absolute": True, "rotation_type": None, "shape": [end - start], "continuous": True}
                for name, (_, start, end) in getattr(first, f"{kind}_groups").items()}

    return {embodiment_tag: {
        "statistics": {"state": group_stats("state"), "action": group_stats("action")},
        "modalities": {"video": {name: {"resolution": first.resolution[name], "channels": 3, "fps": first.fps} for name in first.cameras},
                       "state": shapes("state"), "action": shapes("action")},
        "embodiment_tag": embodiment_tag,
    }}


def normalize(values: np.ndarray, stats: dict[str, dict], width: int) -> np.ndarray:
    """(T, D) group-concatenated values -> min-max normalized per group (groot_policy's rule), zero-padded to `width`."""
    parts, start = [], 0
    for group in stats.values():
        low, high = np.asarray(group["min"]), np.asarray(group["max"])
        parts.append(groot_policy.normalize_min_max(values[:, start:start + len(low)], {"min": low, "max": high}))
        start += len(low)
    normalized = np.concatenate(parts, axis=1)
    return np.pad(normalized, ((0, 0), (0, width - normalized.shape[1]))).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Checkpoint output: new, empty, or (with --overwrite) a checkpoint of this script.
# ---------------------------------------------------------------------------------------------


def is_our_checkpoint(path: pathlib.Path) -> bool:
    try:
        provenance = json.loads((path / PROVENANCE_FILE).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(provenance, dict) and provenance.get("writer") == "finetune_groot.py" and (path / "config.json").is_file()


def check_output_dir(path: pathlib.Path, overwrite: bool) -> None:
    """Refuse, before anything slow, an output directory this run may not write."""
    if not path.exists() and not path.is_symlink():
        return
    if not path.is_dir():
        raise BadInput(f"--output-dir {path} exists and is not a directory")
    try:
        refuse_mount_point(path)
    except ValueError as error:
        raise BadInput(f"--output-dir: {error}") from None
    if is_our_checkpoint(path):
        if not overwrite:
            raise BadInput(f"--output-dir {path} holds a checkpoint of finetune_groot.py; pass --overwrite to replace it")
    elif any(path.iterdir()):
        raise BadInput(f"--output-dir {path} is not empty and holds no checkpoint of finetune_groot.py; refusing to "
                       f"write there (nothing in it was touched): choose a new or empty directory")


def publish_checkpoint(write, output: pathlib.Path) -> None:
    """Call `write(directory)` on a fresh sibling of `output`, then rename it into place: `output` is always
    either the previous checkpoint or the complete new one. Only an empty directory or a checkpoint of
    this script is replaced."""
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = unique_sibling(output, "tmp")
    try:
        write(staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)  # ours, half-written
        raise
    try:
        if is_our_checkpoint(output):
            replace_directory(output, staging)
        else:
            os.rename(staging, output)  # fails unless output is absent or an empty directory (rename(2) replaces that)
    except OSError as error:  # e.g. someone wrote into the output directory meanwhile: keep the new checkpoint
        raise OSError(f"could not move the new checkpoint into {output} ({error}); it is complete in {staging}") from error


def learning_rate(progress: float, args: Args) -> float:
    """Learning rate of an update made at `progress`, the fraction of the run done before it (step / max_steps,
    or the fraction of --max-minutes spent if that is further): linear warm-up over the first warmup_ratio of
    the run, then cosine decay toward 0. HF's cosine schedule (Isaac's) on a fraction, except that the first
    update is not made at 0."""
    if progress < args.warmup_ratio:
        return args.learning_rate * min(1.0, (progress + 1 / args.max_steps) / args.warmup_ratio)
    return args.learning_rate * 0.5 * (1.0 + math.cos(math.pi * (progress - args.warmup_ratio) / (1.0 - args.warmup_ratio)))


def main(args: Args) -> pathlib.Path:
    problems = option_problems(
        args, at_least=dict(seed=0, max_steps=1, batch_size=1, log_every=1, save_every=0, weight_decay=0.0, warmup_ratio=0.0,
                            max_grad_norm=0.0, adam_beta1=0.0, adam_beta2=0.0, torch_threads=1),
        above=dict(learning_rate=0.0, max_minutes=0.0),
        at_most=dict(seed=2**32 - 1, batch_size=4096, learning_rate=1.0, weight_decay=1.0, warmup_ratio=1.0,
                     adam_beta1=0.9999, adam_beta2=0.9999, torch_threads=1024))
    if args.action_padding not in ACTION_PADDINGS:
        problems.append(f"--action-padding must be one of {ACTION_PADDINGS}, got {args.action_padding!r}")
    if args.embodiment_tag not in EMBODIMENT_TAG_TO_ID:
        problems.append(f"--embodiment-tag must be one of {sorted(EMBODIMENT_TAG_TO_ID)}, got {args.embodiment_tag!r}")
    if not args.dataset:
        problems.append("--dataset needs at least one dataset directory")
    scratch = args.init_from == "scratch-small"
    if scratch and not (args.tune_projector and args.tune_diffusion_model):
        problems.append("--init-from scratch-small trains every part of the model (nothing in it is pretrained); "
                        "--no-tune-projector / --no-tune-diffusion-model apply to fine-tuning a checkpoint")
    if problems:
        raise BadInput("invalid arguments:\n  " + "\n  ".join(problems))
    if args.output_dir:
        check_output_dir(pathlib.Path(args.output_dir), args.overwrite)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    torch.manual_seed(args.seed)  # the model's initialization and the flow-matching draws (noise, t, dropout)
    rng = np.random.default_rng(args.seed)  # which frames go into each batch
    augmentation = torch.Generator().manual_seed(args.seed)  # crops and colour jitter
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # Isaac trains with tf32=True
        torch.backends.cudnn.allow_tf32 = True
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" and args.bf16 else contextlib.nullcontext()

    # ----- data -----------------------------------------------------------------------------
    start = time.time()
    try:
        datasets = [load_dataset(root, args.instruction) for root in args.dataset]
    except (FileNotFoundError, ValueError) as error:
        raise BadInput(f"cannot train: {error}") from None
    for dataset in datasets[1:]:
        if dataset.layout() != datasets[0].layout() or not datasets[0].same_cameras(dataset):
            raise BadInput(f"datasets {datasets[0].root} and {dataset.root} differ in their groups or cameras "
                           f"({datasets[0].layout()} {datasets[0].cameras} vs {dataset.layout()} {dataset.cameras}); "
                           "only datasets of one layout can be mixed")
    if len({d.units for d in datasets}) > 1:
        raise BadInput(f"the datasets record their joints in different units ({[d.units for d in datasets]}); mix datasets of one unit")
    metadata = build_metadata(datasets, args.embodiment_tag)
    stats = metadata[args.embodiment_tag]["statistics"]
    cameras = list(datasets[0].cameras)
    episodes = [(d, i) for d in datasets for i in range(len(d.states))]
    lengths = np.array([len(d.states[i]) for d, i in episodes])
    frames_mb = sum(f.nbytes for d in datasets for episode in d.frames for f in episode.values()) / 1e6
    widths = {kind: {key: len(v["min"]) for key, v in stats[kind].items()} for kind in ("state", "action")}
    print(f"data: {len(datasets)} dataset(s), {len(episodes)} episodes, {lengths.sum()} frames, cameras {cameras} at "
          f"{datasets[0].resolution[cameras[0]]}, state {widths['state']}, action {widths['action']}, units {datasets[0].units}, "
          f"{frames_mb:.0f} MB of decoded video, read in {time.time() - start:.0f} s", flush=True)
    run_dir = create_run_dir(args.run_dir, f"{args.exp_name}__{args.seed}__{int(time.time())}")  # once the data is read
    output = pathlib.Path(args.output_dir) if args.output_dir else run_dir / "checkpoint"

    # ----- model ----------------------------------------------------------------------------
    if scratch:
        model = small_model()
        with tempfile.TemporaryDirectory() as folder:
            tokenizer = groot_checkpoint.load_tokenizer(args.tokenizer or groot_checkpoint.write_byte_tokenizer(pathlib.Path(folder)))
        model = model.to(device)
    else:
        patterns = ["config.json", "model.safetensors.index.json", "*.safetensors", f"{groot_checkpoint.TOKENIZER_SUBDIR}/*"]
        try:
            directory = groot_checkpoint.resolve_source(args.init_from, "GR00T checkpoint (--init-from)", patterns, args.revision)
            model = groot_checkpoint.load_model(directory, torch.float32, device)  # float32 master weights, as Isaac
            tokenizer = groot_checkpoint.load_tokenizer(args.tokenizer or groot_checkpoint.checkpoint_tokenizer(directory) or groot_checkpoint.DEFAULT_TOKENIZER)
        except (FileNotFoundError, ValueError) as error:
            raise BadInput(" ".join(f"cannot start from --init-from {args.init_from}: {error}".split())) from None  # one line
        model.config["compute_dtype"] = "bfloat16"  # what Isaac's fine-tuning writes
    vocabulary = model.backbone["eagle_model"].language_model.get_input_embeddings().num_embeddings
    if len(tokenizer) > vocabulary:
        raise BadInput(f"the tokenizer has {len(tokenizer)} tokens but the model's embedding only {vocabulary}; "
                       f"use the tokenizer the model was made with (leave --tokenizer out)")
    # From scratch nothing is pretrained, so everything trains; a checkpoint is fine-tuned with the four flags.
    tune = dict(tune_llm=args.tune_llm or scratch, tune_visual=args.tune_visual or scratch, tune_projector=args.tune_projector,
                tune_diffusion_model=args.tune_diffusion_model)
    model.config["backbone_cfg"] |= {key: tune[key] for key in ("tune_llm", "tune_visual")}
    model.config["action_head_cfg"] |= {key: tune[key] for key in ("tune_projector", "tune_diffusion_model")}
    model.set_trainable_parameters(**tune)
    head = model.action_head
    max_state_dim, horizon = head.state_encoder.layer1.W.shape[1], head.action_horizon
    state_dim, action_dim = (sum(len(v["min"]) for v in stats[kind].values()) for kind in ("state", "action"))
    if state_dim > max_state_dim or action_dim > head.action_dim:
        raise BadInput(f"the datasets' state ({state_dim}) / action ({action_dim}) dims exceed the model's {max_state_dim} / {head.action_dim}")
    image_token_id = tokenizer.convert_tokens_to_ids(IMAGE_CONTEXT_TOKEN)
    embodiment_id = torch.full((args.batch_size,), EMBODIMENT_TAG_TO_ID[args.embodiment_tag], dtype=torch.long, device=device)
    trainable = {name: p for name, p in model.named_parameters() if p.requires_grad}
    total = sum(p.numel() for p in model.parameters())
    print(f"model: {args.init_from}, {total / 1e6:.1f} M parameters, {sum(p.numel() for p in trainable.values()) / 1e6:.1f} M "
          f"trained, {model.tokens_per_image} tokens per image, on {device}{' (bf16 autocast)' if device.type == 'cuda' and args.bf16 else ''}", flush=True)

    # All frames in one table, in frame order: normalized state (N, 64), the action chunk rows of every episode
    # (its T rows then horizon - 1 padding rows, (N + episodes * (horizon - 1), 32)) with their mask, and the
    # camera frames (N, V, H, W, 3) uint8, on the GPU when they take under a quarter of its free memory (a batch
    # is then gathered there), else on the CPU; and each frame's prompt, tokenized once per distinct instruction.
    chunk_rows = horizon - 1
    states = np.concatenate([normalize(d.states[i], stats["state"], max_state_dim) for d, i in episodes])
    action_rows, mask_rows = [], []
    for dataset, i in episodes:
        actions = normalize(dataset.actions[i], stats["action"], head.action_dim)
        mask = np.zeros_like(actions)
        mask[:, :action_dim] = 1.0
        if args.action_padding == "repeat":  # Isaac's "first_last" padding: hold the last target, keep it in the loss
            pad_actions, pad_mask = np.repeat(actions[-1:], chunk_rows, 0), np.repeat(mask[-1:], chunk_rows, 0)
        else:
            pad_actions, pad_mask = np.zeros((chunk_rows, head.action_dim), np.float32), np.zeros((chunk_rows, head.action_dim), np.float32)
        action_rows.append(np.concatenate([actions, pad_actions]))
        mask_rows.append(np.concatenate([mask, pad_mask]))
    action_rows, mask_rows = torch.from_numpy(np.concatenate(action_rows)), torch.from_numpy(np.concatenate(mask_rows))
    chunk_start = torch.from_numpy(np.arange(lengths.sum()) + np.repeat(np.arange(len(episodes)) * chunk_rows, lengths))
    states = torch.from_numpy(states)
    frames = torch.empty((lengths.sum(), len(cameras), *datasets[0].frames[0][cameras[0]].shape[1:]), dtype=torch.uint8)
    for (dataset, i), start, length in zip(episodes, np.cumsum(lengths) - lengths, lengths):
        frames[start:start + length] = torch.from_numpy(np.stack(list(dataset.frames[i].values()), axis=1))  # in camera order
        dataset.frames[i] = None  # the table holds them now
    if device.type == "cuda" and frames.nbytes < torch.cuda.mem_get_info(device)[0] / 4:
        frames = frames.to(device)
    instructions = {}  # distinct instruction -> its index
    frame_prompt = torch.tensor([instructions.setdefault(text, len(instructions)) for d, i in episodes for text in d.instructions[i]])
    prompts = tokenizer([groot_policy.build_prompt(text, len(cameras), model.tokens_per_image) for text in instructions],
                        padding=True, return_tensors="pt")

    def get_batch(indices: torch.Tensor) -> dict[str, torch.Tensor]:
        """Model inputs for frames `indices` (into all frames of all datasets), like GR00TPolicy.prepare_inputs
        plus the action chunk and its mask, images augmented (--augment) or centre-cropped as at inference."""
        views = frames[indices.to(frames.device)].to(device)
        pixels = (groot_policy.augment_images(views, model.image_size, augmentation) if args.augment
                  else groot_policy.preprocess_images(views.flatten(0, 1), model.image_size))
        rows = chunk_start[indices][:, None] + torch.arange(horizon)
        prompt = frame_prompt[indices]
        batch = {"input_ids": prompts["input_ids"][prompt], "attention_mask": prompts["attention_mask"][prompt],
                 "state": states[indices][:, None], "actions": action_rows[rows], "action_mask": mask_rows[rows]}
        return {k: v.to(device) for k, v in batch.items()} | {"pixel_values": pixels, "embodiment_id": embodiment_id[: len(indices)]}

    # ----- optimizer and checkpoint -----------------------------------------------------------
    decays = {name: p.ndim >= 2 and not name.endswith(".b") for name, p in trainable.items()}  # not biases (.b, .bias) nor norms
    optimizer = torch.optim.AdamW([{"params": [p for n, p in trainable.items() if decays[n]], "weight_decay": args.weight_decay},
                                   {"params": [p for n, p in trainable.items() if not decays[n]], "weight_decay": 0.0}],
                                  lr=args.learning_rate, betas=(args.adam_beta1, args.adam_beta2), eps=1e-8)

    def save(step: int, loss: float) -> None:
        provenance = {"writer": "finetune_groot.py", "step": step, "max_steps": args.max_steps, "loss": loss, "trained": tune,
                      "datasets": [str(d.root) for d in datasets],
                      "joint_units": datasets[0].units, "args": asdict(args), "time": time.strftime("%Y-%m-%d %H:%M:%S")}

        def write(directory: pathlib.Path) -> None:
            # The tokenizer trained with travels in tokenizer/: loading prefers it, so the checkpoint works offline.
            groot_checkpoint.save_checkpoint(model, directory, metadata, tokenizer)
            (directory / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2))

        publish_checkpoint(write, output)
        print(f"saved {output} (step {step})", flush=True)

    # ----- training loop -----------------------------------------------------------------------
    writer = SummaryWriter(str(run_dir))
    writer.add_text("hyperparameters", "|param|value|\n|-|-|\n" + "\n".join(f"|{k}|{v}|" for k, v in vars(args).items()))
    model.train()
    losses, data_seconds, start, last = [], 0.0, time.time(), time.time()
    step = 0  # updates made
    stop = StopSignals()  # Ctrl-C and SIGTERM both write the checkpoint of the steps done and exit non-zero
    try:
        while True:
            fraction = step / args.max_steps  # of the run done, in steps or (--max-minutes) in time
            if args.max_minutes:
                fraction = max(fraction, (time.time() - start) / (60 * args.max_minutes))
            if fraction >= 1.0:
                break
            lr = learning_rate(fraction, args)
            for group in optimizer.param_groups:
                group["lr"] = lr
            data_start = time.time()
            batch = get_batch(torch.from_numpy(rng.integers(len(frames), size=args.batch_size)))
            data_seconds += time.time() - data_start
            with autocast:
                loss = model(**batch, image_token_id=image_token_id)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if args.max_grad_norm:
                torch.nn.utils.clip_grad_norm_(trainable.values(), args.max_grad_norm)
            optimizer.step()
            losses.append(loss.item())
            step += 1
            if step % args.log_every == 0 or step == args.max_steps:
                now = time.time()
                rate = min(args.log_every, len(losses)) / (now - last)
                mean = float(np.mean(losses[-args.log_every:]))
                print(f"step {step}/{args.max_steps} | loss {mean:.4f} | lr {lr:.2e} | "
                      f"{rate:.2f} steps/s, {rate * args.batch_size:.1f} samples/s | data {100 * data_seconds / (now - start):.0f} % "
                      f"of the time | {now - start:.0f} s", flush=True)
                writer.add_scalar("losses/train_loss", mean, step)
                writer.add_scalar("charts/learning_rate", lr, step)
                writer.add_scalar("charts/steps_per_second", rate, step)
                last = now
            if args.save_every and step % args.save_every == 0 and step < args.max_steps:
                save(step, losses[-1])
    except KeyboardInterrupt:
        print(f"interrupted after {step} steps: writing their checkpoint", flush=True)
        if losses:
            save(len(losses), losses[-1])
        close_writer(writer)
        raise SystemExit(stop.exit_status) from None
    seconds = time.time() - start
    print(f"trained {step} steps in {seconds:.0f} s ({step / seconds:.2f} steps/s), loss {np.mean(losses[-args.log_every:]):.4f} "
          f"over the last {min(step, args.log_every)}", flush=True)
    save(step, losses[-1])
    close_writer(writer)
    print(f"evaluate it: python eval_policy.py --base-policy groot --groot.model {output} --n-episodes 50")
    return output


if __name__ == "__main__":
    main(tyro.cli(Args))
