"""Fine-tune GR00T N1.5 on LeRobot datasets (one file, in the style of nanoGPT's train.py).

    python record_demos.py --cameras --n-episodes 200 --output-dir runs/demos/jacobian_cameras
    # a small GR00T N1.5-architecture model (every part shrunk) from scratch: checkpoints/groot_n15_small_so101_sim
    # took this for 7 min on one GPU, then 3.5 min more at lr 3e-4 (README); on a 2-core CPU, expect hours
    python finetune_groot.py --dataset runs/demos/jacobian_cameras --batch-size 128 --learning-rate 1e-3 --no-augment \
        --max-minutes 7 --max-steps 1000000
    # GPU: fine-tune NVIDIA's base model with Isaac's defaults (estimated ~30 GB of GPU memory at batch 32, see the README)
    python finetune_groot.py --dataset runs/demos/jacobian_cameras --init-from nvidia/GR00T-N1.5-3B --batch-size 32
    # then, like any Isaac-format checkpoint:
    python eval_policy.py --base-policy groot --groot-model runs/<run>/checkpoint --n-episodes 50

Top to bottom: `Args`; reading the datasets (each episode's videos decoded once into one frame table,
on the GPU when it fits) and their statistics; the model (`--init-from scratch-small`, or an Isaac-format checkpoint directory or
hub id), whose trained parts follow Isaac's four tune flags when fine-tuning (from scratch every part
trains); then the loop: sample (frame, 16-step action chunk) pairs, one AdamW step on the
flow-matching loss (groot_n15.FlowMatchingActionHead.loss), print the loss now and then, and write
the checkpoint.

The recipe is Isaac-GR00T's (scripts/gr00t_finetune.py with the SO-100 data config): state and
action groups from meta/modality.json, min-max normalised to [-1, 1] with the statistics of all the
datasets, zero-padded to the model's 64 state / 32 action dims; the action chunk is the absolute
targets of steps t..t+15, with a mask over the real action dims (and, by default, over the steps past
the episode's end: Isaac repeats the last step instead, `--action-padding repeat`); images get a
random 95 % crop and colour jitter (groot_n15.augment_images); the loss is flow matching with
t = (0.999 - s) / 0.999, s ~ Beta(1.5, 1); AdamW (betas 0.95, 0.999; weight decay 1e-5 except on
biases and norms), lr 1e-4 with 5 % linear warm-up then cosine decay to 0, gradients clipped at norm
1, bf16 autocast and TF32 on a GPU. Frames are drawn uniformly from all datasets.

The checkpoint is Isaac's on-disk format (groot_n15.save_checkpoint): config.json, safetensors,
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

import groot_n15
from groot_n15 import EMBODIMENT_TAG_TO_ID, GR00TN15, IMAGE_CONTEXT_TOKEN
from lerobot_dataset import read_frames, read_video_frames
from run_utils import StopSignals, close_writer, create_run_dir, option_problems, replace_directory, unique_sibling


@dataclass
class Args:
    dataset: list[str] = field(default_factory=lambda: ["runs/demos/jacobian_cameras"])
    """LeRobot v2.x dataset directories with camera videos and meta/modality.json (record_demos.py --cameras); several are mixed"""
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
    "text_config": dict(vocab_size=groot_n15.BYTE_TOKENIZER_VOCAB_SIZE, hidden_size=96, intermediate_size=288,
                        num_hidden_layers=3, num_attention_heads=3, num_key_value_heads=1, head_dim=32),
    "select_layer": 3,
    "action_head": dict(backbone_embedding_dim=96, hidden_size=96, input_embedding_dim=96),
    "dit": dict(num_layers=4, num_attention_heads=3, attention_head_dim=32, cross_attention_dim=96, output_dim=96),
    "vl_self_attention": dict(num_layers=1, num_attention_heads=3, attention_head_dim=32),
}
PROVENANCE_FILE = groot_n15.TRAINING_RECORD
"""written into every checkpoint of this script: how it was made (with the joint units the groot base reads), and the mark --overwrite looks for"""
ACTION_PADDINGS = ("mask", "repeat")


def small_config() -> dict:
    """config.json of the small model: N1.5's, with the sizes of SMALL_MODEL (the loader reads
    backbone_cfg.vision_config / text_config; Isaac's own loader does not, so only ours reads it)."""
    config = copy.deepcopy(groot_n15.N15_CONFIG)
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
        if isinstance(module, groot_n15.CategorySpecificLinear):
            torch.nn.init.normal_(module.W, std=module.W.shape[1] ** -0.5)
    return model


# ---------------------------------------------------------------------------------------------
# Data: LeRobot v2.x episodes with videos, and GR00T's meta/modality.json.
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
    """camera name (video.<name>) -> video feature, e.g. top_view -> observation.images.top_view"""
    resolution: dict[str, list[int]]
    """camera name -> [width, height]"""
    fps: float
    units: str | None
    """so101_sim.joint_units of datasets record_demos.py wrote, else None"""
    states: list[np.ndarray] = field(default_factory=list)
    actions: list[np.ndarray] = field(default_factory=list)
    instructions: list[list[str]] = field(default_factory=list)
    frames: list[dict[str, np.ndarray]] = field(default_factory=list)

    def layout(self) -> tuple:
        """What must agree between mixed datasets: groups with their widths, cameras with their resolution."""
        return ({k: e - s for k, (_, s, e) in self.state_groups.items()}, {k: e - s for k, (_, s, e) in self.action_groups.items()},
                {k: tuple(v) for k, v in self.resolution.items()})


def load_dataset(root: str | pathlib.Path, instruction: str | None) -> Dataset:
    """Read a dataset's frames (parquet), its modality.json and every episode's videos (decoded once)."""
    root = pathlib.Path(root)
    try:
        info = json.loads((root / "meta" / "info.json").read_text())
        modality = json.loads((root / "meta" / "modality.json").read_text())
    except FileNotFoundError as error:
        raise SystemExit(f"{root} is not a LeRobot dataset with GR00T's meta/modality.json ({error.filename} is missing); "
                         f"record one with `python record_demos.py --cameras`") from error

    def groups(kind: str, default_key: str) -> dict[str, tuple[str, int, int]]:
        return {name: (g.get("original_key", default_key), int(g["start"]), int(g["end"])) for name, g in modality[kind].items()}

    state_groups, action_groups = groups("state", "observation.state"), groups("action", "action")
    cameras = {name: v.get("original_key", f"observation.images.{name}") for name, v in modality.get("video", {}).items()}
    if not cameras:
        raise SystemExit(f"{root}: modality.json names no video; GR00T needs camera images (record with --cameras)")
    resolution = {}
    for name, key in cameras.items():
        feature = info["features"].get(key, {})
        if feature.get("dtype") != "video":
            raise SystemExit(f"{root}: modality.json's video.{name} reads {key}, which info.json has no video feature for")
        height, width = feature["shape"][:2]
        resolution[name] = [int(width), int(height)]

    task_key = modality.get("annotation", {}).get("human.task_description", {}).get("original_key")
    columns = sorted({key for key, _, _ in [*state_groups.values(), *action_groups.values()]}
                     | {"episode_index", "frame_index"} | ({task_key} if task_key else set()))
    try:
        arrays = read_frames(root, columns)
    except FileNotFoundError as error:
        raise SystemExit(str(error)) from None
    tasks = {}
    if task_key and (root / "meta" / "tasks.jsonl").is_file():
        for line in (root / "meta" / "tasks.jsonl").read_text().splitlines():
            if line.strip():
                entry = json.loads(line)
                tasks[entry["task_index"]] = entry["task"]

    dataset = Dataset(root, state_groups, action_groups, cameras, resolution, float(info.get("fps", 30)),
                      info.get("so101_sim", {}).get("joint_units"))
    episode_index = arrays["episode_index"].astype(np.int64)
    starts = np.flatnonzero(np.r_[True, episode_index[1:] != episode_index[:-1]])
    # Each video is one ffmpeg process: decode several at once (the threads only wait on them).
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        videos = {(i, name): pool.submit(read_video_frames, root, int(episode_index[i]), key)
                  for i in starts for name, key in cameras.items()}
    for start, end in zip(starts, np.r_[starts[1:], len(episode_index)]):
        dataset.states.append(np.concatenate([arrays[key][start:end, a:b] for key, a, b in state_groups.values()], axis=1))
        dataset.actions.append(np.concatenate([arrays[key][start:end, a:b] for key, a, b in action_groups.values()], axis=1))
        if instruction is not None or not task_key:
            # Isaac's default instruction when a dataset has no annotation.
            texts = [instruction or groot_n15.DEFAULT_INSTRUCTION] * (end - start)
        else:
            texts = [tasks.get(int(i), groot_n15.DEFAULT_INSTRUCTION) for i in arrays[task_key][start:end]]
        dataset.instructions.append(texts)
        frames = {}
        for name, key in cameras.items():
            video = videos[start, name].result()
            if len(video) < end - start:
                raise SystemExit(f"{root}: episode {episode_index[start]} has {end - start} frames but its {key} video {len(video)}")
            frames[name] = video[: end - start]
        dataset.frames.append(frames)
    return dataset


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
    """(T, D) group-concatenated values -> min-max normalized per group (groot_n15's rule), zero-padded to `width`."""
    parts, start = [], 0
    for group in stats.values():
        low, high = np.asarray(group["min"]), np.asarray(group["max"])
        parts.append(groot_n15.normalize_min_max(values[:, start:start + len(low)], {"min": low, "max": high}))
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
        raise SystemExit(f"--output-dir {path} exists and is not a directory")
    if is_our_checkpoint(path):
        if not overwrite:
            raise SystemExit(f"--output-dir {path} holds a checkpoint of finetune_groot.py; pass --overwrite to replace it")
    elif any(path.iterdir()):
        raise SystemExit(f"--output-dir {path} is not empty and holds no checkpoint of finetune_groot.py; refusing to "
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
        args, at_least=dict(max_steps=1, batch_size=1, log_every=1, save_every=0, weight_decay=0.0, warmup_ratio=0.0,
                            max_grad_norm=0.0, adam_beta1=0.0, adam_beta2=0.0, torch_threads=1),
        above=dict(learning_rate=0.0, max_minutes=0.0), at_most=dict(warmup_ratio=1.0, adam_beta1=0.9999, adam_beta2=0.9999))
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
        raise SystemExit("invalid arguments:\n  " + "\n  ".join(problems))
    if args.output_dir:
        check_output_dir(pathlib.Path(args.output_dir), args.overwrite)
    run_dir = create_run_dir(args.run_dir, f"{args.exp_name}__{args.seed}__{int(time.time())}")
    output = pathlib.Path(args.output_dir) if args.output_dir else run_dir / "checkpoint"
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
    datasets = [load_dataset(root, args.instruction) for root in args.dataset]
    for dataset in datasets[1:]:
        if dataset.layout() != datasets[0].layout():
            raise SystemExit(f"datasets {datasets[0].root} and {dataset.root} differ in their groups or cameras "
                             f"({datasets[0].layout()} vs {dataset.layout()}); only datasets of one layout can be mixed")
    if len({d.units for d in datasets}) > 1:
        raise SystemExit(f"the datasets record their joints in different units ({[d.units for d in datasets]}); mix datasets of one unit")
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

    # ----- model ----------------------------------------------------------------------------
    if scratch:
        model = small_model()
        with tempfile.TemporaryDirectory() as folder:
            tokenizer = groot_n15.load_tokenizer(args.tokenizer or groot_n15.write_byte_tokenizer(pathlib.Path(folder)))
        model = model.to(device)
    else:
        patterns = ["config.json", "model.safetensors.index.json", "*.safetensors", f"{groot_n15.TOKENIZER_SUBDIR}/*"]
        try:
            directory = groot_n15.resolve_source(args.init_from, "GR00T checkpoint (--init-from)", patterns, args.revision)
            model = groot_n15.load_model(directory, torch.float32, device)  # float32 master weights, as Isaac
            tokenizer = groot_n15.load_tokenizer(args.tokenizer or groot_n15.checkpoint_tokenizer(directory) or groot_n15.DEFAULT_TOKENIZER)
        except (FileNotFoundError, ValueError) as error:
            raise SystemExit(f"cannot start from --init-from {args.init_from}: {error}") from error
        model.config["compute_dtype"] = "bfloat16"  # what Isaac's fine-tuning writes
    vocabulary = model.backbone["eagle_model"].language_model.get_input_embeddings().num_embeddings
    if len(tokenizer) > vocabulary:
        raise SystemExit(f"the tokenizer has {len(tokenizer)} tokens but the model's embedding only {vocabulary}; "
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
        raise SystemExit(f"the datasets' state ({state_dim}) / action ({action_dim}) dims exceed the model's {max_state_dim} / {head.action_dim}")
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
        frames[start:start + length] = torch.from_numpy(np.stack([dataset.frames[i][c] for c in cameras], axis=1))
        dataset.frames[i] = None  # the table holds them now
    if device.type == "cuda" and frames.nbytes < torch.cuda.mem_get_info(device)[0] / 4:
        frames = frames.to(device)
    instructions = {}  # distinct instruction -> its index
    frame_prompt = torch.tensor([instructions.setdefault(text, len(instructions)) for d, i in episodes for text in d.instructions[i]])
    prompts = tokenizer([groot_n15.build_prompt(text, len(cameras), model.tokens_per_image) for text in instructions],
                        padding=True, return_tensors="pt")

    def get_batch(indices: torch.Tensor) -> dict[str, torch.Tensor]:
        """Model inputs for frames `indices` (into all frames of all datasets), like GR00TPolicy.prepare_inputs
        plus the action chunk and its mask, images augmented (--augment) or centre-cropped as at inference."""
        views = frames[indices.to(frames.device)].to(device)
        pixels = (groot_n15.augment_images(views, model.image_size, augmentation) if args.augment
                  else groot_n15.preprocess_images(views.flatten(0, 1), model.image_size))
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
            groot_n15.save_checkpoint(model, directory, metadata, tokenizer)
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
    print(f"evaluate it: python eval_policy.py --base-policy groot --groot-model {output} --n-episodes 50")
    return output


if __name__ == "__main__":
    main(tyro.cli(Args))
