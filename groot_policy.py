"""GR00T N1.5 as a policy: Isaac's observation dict in, a chunk of actions out (`GR00TPolicy`).

Everything between the robot and the model: min-max normalization of states and actions with the
checkpoint's statistics, the video transform (95 % crop, resize to 224, [-1, 1]; random crop and
colour jitter when training), and the Eagle chat prompt with one placeholder block per image.

    policy = GR00TPolicy.from_pretrained("path/or/hub-id", device="cuda")
    chunk = policy.get_action({
        "video.front": uint8 [B, 1, H, W, 3], "video.wrist": ...,
        "state.single_arm": float [B, 1, 5], "state.gripper": float [B, 1, 1],
        "annotation.human.task_description": ["put the paper in the square"] * B,
    })  # -> {"action.single_arm": [B, 16, 5], "action.gripper": [B, 16, 1]}

The model is groot_model.py, the checkpoint files groot_checkpoint.py; groot_server.py serves a
policy over the network.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from groot_checkpoint import (
    DEFAULT_TOKENIZER, IMAGE_CONTEXT_TOKEN, GR00TMetadata, checkpoint_tokenizer, load_metadata, load_model, load_tokenizer,
    read_config, resolve_checkpoint,
)
from groot_model import EMBODIMENT_TAG_TO_ID, NOISE_MODES, GR00TN15

DEFAULT_INSTRUCTION = "Perform the default behavior."  # what Isaac uses when no annotation is sent
CROP_FRACTION = 0.95  # crop of the Isaac video transform: random at train time, centred at inference
COLOR_JITTER = {"brightness": 0.3, "contrast": 0.4, "saturation": 0.5, "hue": 0.08}  # Isaac's train-time VideoColorJitter


# ---------------------------------------------------------------------------------------------
# Pre-processing: states, images and the prompt.
# ---------------------------------------------------------------------------------------------


def normalize_min_max(x: np.ndarray, stats: dict[str, np.ndarray]) -> np.ndarray:
    """Map [min, max] to [-1, 1] per dimension (0 where max == min); no clipping, as Isaac."""
    low, high = stats["min"], stats["max"]
    span = np.where(high > low, high - low, 1.0)
    return np.where(high > low, 2.0 * (x - low) / span - 1.0, 0.0)


def unnormalize_min_max(y: np.ndarray, stats: dict[str, np.ndarray]) -> np.ndarray:
    """Inverse of `normalize_min_max`: [-1, 1] -> [min, max]."""
    return (y + 1.0) / 2.0 * (stats["max"] - stats["min"]) + stats["min"]


def _uint8_images(frames) -> torch.Tensor:
    """uint8 RGB images (..., H, W, 3) as a tensor (numpy arrays are wrapped, tensors kept where they are)."""
    return frames if isinstance(frames, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(frames))


def preprocess_images(frames, image_size: int = 224) -> torch.Tensor:
    """uint8 (N, H, W, 3) RGB (numpy, or a tensor on any device) -> float (N, 3, S, S) in [-1, 1] on the same
    device, as Isaac's eval video transform: 95 % centre crop, bilinear antialiased resize, truncation back to
    uint8, then (x/255 - 0.5) / 0.5."""
    images = _uint8_images(frames).permute(0, 3, 1, 2).float() / 255.0
    height, width = images.shape[-2:]
    crop_h, crop_w = int(CROP_FRACTION * height), int(CROP_FRACTION * width)
    top, left = int(round((height - crop_h) / 2)), int(round((width - crop_w) / 2))  # torchvision's centre
    images = images[..., top:top + crop_h, left:left + crop_w]
    images = F.interpolate(images, size=(image_size, image_size), mode="bilinear", align_corners=False, antialias=True)
    images = (images * 255).clamp(0, 255).to(torch.uint8).float()  # Isaac round-trips through uint8 (truncating)
    return images / 127.5 - 1.0


def augment_images(frames, image_size: int = 224, generator: torch.Generator | None = None,
                   crop_fraction: float = CROP_FRACTION, jitter: dict | None = None) -> torch.Tensor:
    """Isaac's train-time video transform: uint8 RGB views (V, H, W, 3) of one sample, or (B, V, H, W, 3)
    of a batch (numpy, or a tensor on any device) -> float (B * V, 3, S, S) in [-1, 1] on that device.
    `preprocess_images` (inference) with a random crop instead of the centre one and colour jitter after
    the resize: random 95 % crop, bilinear antialiased resize, ColorJitter (`jitter`, default
    COLOR_JITTER), truncation to uint8, (x/255 - 0.5) / 0.5. Each sample draws its own crop offset and
    jitter; Isaac transforms the views of a sample as one stacked tensor, so they share them. The draws
    come from `generator` (a CPU one), the pixels stay on their device: a batch is one set of kernels."""
    frames = _uint8_images(frames)
    if frames.ndim == 4:
        frames = frames[None]
    batch, views, height, width, _ = frames.shape
    crop_h, crop_w = int(crop_fraction * height), int(crop_fraction * width)
    top = torch.randint(height - crop_h + 1, (batch,), generator=generator)  # torchvision RandomCrop's offsets
    left = torch.randint(width - crop_w + 1, (batch,), generator=generator)
    rows = (top[:, None] + torch.arange(crop_h)).to(frames.device)
    cols = (left[:, None] + torch.arange(crop_w)).to(frames.device)
    samples = torch.arange(batch, device=frames.device)[:, None, None]
    crops = frames.permute(0, 2, 3, 1, 4)[samples, rows[:, :, None], cols[:, None, :]]  # (B, crop_h, crop_w, V, 3)
    images = crops.permute(0, 3, 4, 1, 2).reshape(batch * views, 3, crop_h, crop_w).float() / 255.0
    images = F.interpolate(images, size=(image_size, image_size), mode="bilinear", align_corners=False, antialias=True)
    images = color_jitter(images.unflatten(0, (batch, views)), generator, **(COLOR_JITTER if jitter is None else jitter))
    images = (images.flatten(0, 1) * 255).clamp(0, 255).to(torch.uint8).float()
    return images / 127.5 - 1.0


def color_jitter(images: torch.Tensor, generator: torch.Generator | None, brightness: float, contrast: float,
                 saturation: float, hue: float) -> torch.Tensor:
    """torchvision's ColorJitter on float RGB (B, ..., 3, H, W) in [0, 1], one draw per sample (shared by its
    images along the middle dims): factors uniform in [1 - x, 1 + x] for brightness, contrast and
    saturation and a hue shift uniform in [-hue, hue] (of a full turn), applied in a random order.
    Brightness scales, contrast blends with the mean grey of each image, saturation with its grey image,
    each clamped to [0, 1]; hue rotates in HSV."""
    batch, device = images.shape[0], images.device
    order = torch.rand(batch, 4, generator=generator).argsort(1).to(device)  # a random permutation per sample
    spans = torch.tensor([brightness, contrast, saturation])
    factors = (1 + spans * (2 * torch.rand(batch, 3, generator=generator) - 1)).to(device)
    shifts = (hue * (2 * torch.rand(batch, generator=generator) - 1)).to(device)
    per_sample = (-1,) + (1,) * (images.ndim - 1)

    def grey(x):  # ITU-R 601-2 luma, torchvision's weights
        return (x * torch.tensor([0.2989, 0.587, 0.114], device=device).view(3, 1, 1)).sum(-3, keepdim=True)

    def blend(x, other, factor):
        return (factor.view(per_sample) * x + (1 - factor.view(per_sample)) * other).clamp(0, 1)

    operations = [
        lambda x, f, s: blend(x, 0.0, f[:, 0]),
        lambda x, f, s: blend(x, grey(x).mean((-3, -2, -1), keepdim=True), f[:, 1]),
        lambda x, f, s: blend(x, grey(x), f[:, 2]),
        lambda x, f, s: rotate_hue(x, s.view(per_sample[:-1])),
    ]
    images = images.clone()
    for position in range(4):  # each sample's operations in its own order, one batched call per operation
        for index, operation in enumerate(operations):
            chosen = (order[:, position] == index).nonzero().squeeze(1)
            if len(chosen):
                images[chosen] = operation(images[chosen], factors[chosen], shifts[chosen])
    return images


def rotate_hue(images: torch.Tensor, shift: float | torch.Tensor) -> torch.Tensor:
    """Add `shift` (a fraction of a turn; a float, or a tensor broadcasting against (..., H, W)) to the hue
    of float RGB images (..., 3, H, W) in [0, 1]."""
    r, g, b = images.unbind(-3)
    value, low = images.amax(-3), images.amin(-3)
    chroma = value - low
    saturation = torch.where(value > 0, chroma / value.clamp_min(1e-12), 0.0)
    c = chroma.clamp_min(1e-12)
    hue = torch.where(value == r, ((g - b) / c) % 6, torch.where(value == g, (b - r) / c + 2, (r - g) / c + 4)) / 6
    hue = (torch.where(chroma > 0, hue, 0.0) + shift) % 1.0
    # HSV -> RGB: channel n of (r, g, b) = v - v * s * clamp(min(k, 4 - k), 0, 1), k = (n' + 6 h) mod 6, n' = 5, 3, 1
    k = (torch.tensor([5.0, 3.0, 1.0], device=images.device).view(3, 1, 1) + 6 * hue.unsqueeze(-3)) % 6
    return value.unsqueeze(-3) - (value * saturation).unsqueeze(-3) * torch.clamp(torch.minimum(k, 4 - k), 0, 1)


def build_prompt(instruction: str, num_images: int, tokens_per_image: int) -> str:
    """The Eagle chat prompt: images first, each as `<image k><img>` + placeholders + `</img>`."""
    images = "".join(f"<image {k}><img>{IMAGE_CONTEXT_TOKEN * tokens_per_image}</img>" for k in range(1, num_images + 1))
    return (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        f"<|im_start|>user\n{images}{instruction}<|im_end|>\n<|im_start|>assistant\n"
    )


def instructions_from(observation: dict, batch: int, language_key: str) -> list[str]:
    """One instruction per batch row from the annotation key (a str, or a list of B str / [str])."""
    keys = [language_key] if language_key in observation else [k for k in observation if k.startswith("annotation")]
    if not keys:
        return [DEFAULT_INSTRUCTION] * batch
    value = observation[keys[0]]
    if isinstance(value, str):
        return [value] * batch
    # Plain text, as in training; post-Sep-2025 Isaac servers render "['...']" instead.
    texts = [str(np.asarray(v).reshape(-1)[0]) for v in value]
    if len(texts) != batch:
        raise ValueError(f"{keys[0]} has {len(texts)} instructions for a batch of {batch} observations.")
    return texts


def check_metadata_fits(metadata: GR00TMetadata, model: GR00TN15) -> None:
    """Raise ValueError unless the model has room for metadata.json's joints and embodiment: states are zero-padded
    to the model's max_state_dim, actions sliced from its action_dim, and the embodiment picks one of its slots."""
    max_state_dim, num_embodiments = model.action_head.state_encoder.layer1.W.shape[1], model.action_head.state_encoder.layer1.W.shape[0]
    state_dim, action_dim = sum(metadata.state_dims.values()), sum(metadata.action_dims.values())
    if state_dim > max_state_dim or action_dim > model.action_head.action_dim:
        raise ValueError(f"metadata.json has {state_dim} state and {action_dim} action dims; the model takes at most "
                         f"{max_state_dim} and {model.action_head.action_dim} (config.json max_state_dim and action_dim)")
    if EMBODIMENT_TAG_TO_ID[metadata.embodiment_tag] >= num_embodiments:
        raise ValueError(f"embodiment {metadata.embodiment_tag!r} is slot {EMBODIMENT_TAG_TO_ID[metadata.embodiment_tag]}, "
                         f"but the model has {num_embodiments} (config.json max_num_embodiments)")


# ---------------------------------------------------------------------------------------------
# The policy.
# ---------------------------------------------------------------------------------------------


def check_image_tokens(config: dict, tokenizer, model: GR00TN15) -> None:
    """A checkpoint that records its image token id and tokens per image (save_checkpoint writes them) must get
    the same from this tokenizer and model: with another id the images are silently left out of the prompt."""
    found = {"image_token_id": tokenizer.convert_tokens_to_ids(IMAGE_CONTEXT_TOKEN), "tokens_per_image": model.tokens_per_image}
    for key, value in found.items():
        if key in config and config[key] != value:
            raise ValueError(f"the checkpoint was trained with {key} {config[key]} but this tokenizer and model give {value}: "
                             "load it with the tokenizer it was trained with (its own tokenizer/ folder)")


class GR00TPolicy:
    """Batched GR00T N1.5 policy on the official Isaac observation/action dict format.

    get_action(observation) takes
      video.<camera>: uint8 [B, T, H, W, 3] RGB (T = 1), any H x W (cropped and resized to 224;
        send metadata.video[camera]["resolution"] to match training, which Isaac asserts),
      state.<key>: float [B, T, D_key] in the dataset's units (the last of T is used),
      annotation.* (optional): list of B instructions (or one str for all),
    and returns action.<key>: float32 [B, 16, D_key] absolute targets in the same units.
    Without the batch axis (state [T, D]) the output has no batch axis either, as in Isaac.
    Keys and statistics: `policy.metadata` (GR00TMetadata) and `modality_config()`.

    `noise="random"` starts each chunk's flow from a Gaussian draw, as Isaac does (`seed` seeds the
    draws); `noise="zero"` starts it from the Gaussian's mean, so an observation always gives the same
    chunk: a deterministic base, which a residual trained on top of it can predict.
    """

    def __init__(self, model: GR00TN15, tokenizer, metadata: GR00TMetadata, seed: int | None = None, clip_actions: bool = False,
                 noise: str = "random"):
        if noise not in NOISE_MODES:
            raise ValueError(f"noise must be one of {NOISE_MODES}, got {noise!r}")
        check_metadata_fits(metadata, model)
        self.model, self.tokenizer, self.metadata, self.noise = model, tokenizer, metadata, noise
        self.device = next(model.parameters()).device
        self.embodiment_id = EMBODIMENT_TAG_TO_ID[metadata.embodiment_tag]
        self.image_token_id = tokenizer.convert_tokens_to_ids(IMAGE_CONTEXT_TOKEN)
        self.max_state_dim = model.action_head.state_encoder.layer1.W.shape[1]
        # Isaac does not clip; clipping to the training [min, max] is an opt-in safety net.
        self.clip_actions = clip_actions
        self.generator = torch.Generator()
        if seed is None:
            self.generator.seed()
        else:
            self.generator.manual_seed(seed)

    @classmethod
    def from_pretrained(cls, checkpoint: str | Path, embodiment_tag: str = "new_embodiment",
                        tokenizer: str | Path | None = None, dtype: str | torch.dtype | None = None,
                        device: str | None = None, revision: str | None = None, attn_implementation: str = "sdpa",
                        seed: int | None = None, clip_actions: bool = False, noise: str = "random") -> GR00TPolicy:
        """Load a checkpoint directory or hub id (`revision` = branch/tag/commit, e.g. phospho's step branches).
        `dtype` is the weight and compute dtype whatever the stored dtype, by default config.json's torch_dtype
        (bfloat16 for NVIDIA's checkpoints, float32 for finetune_groot.py's small model); device defaults to CUDA if present.
        Tokenizer: the checkpoint's own (`checkpoint_tokenizer`) unless `tokenizer` names another than the
        default; else `tokenizer`, or DEFAULT_TOKENIZER (the Eagle 2.5 one, downloaded on first use)."""
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        directory = resolve_checkpoint(checkpoint, revision)
        if dtype is None:
            dtype = read_config(directory).get("torch_dtype", "bfloat16")
        dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
        metadata = load_metadata(directory, embodiment_tag)  # before the weights: fails fast on a bad tag
        if tokenizer is None or str(tokenizer) == DEFAULT_TOKENIZER:
            tokenizer = checkpoint_tokenizer(directory) or DEFAULT_TOKENIZER
        tokenizer = load_tokenizer(tokenizer)
        model = load_model(directory, dtype, device, attn_implementation)
        check_image_tokens(json.loads((directory / "config.json").read_text()), tokenizer, model)
        return cls(model, tokenizer, metadata, seed=seed, clip_actions=clip_actions, noise=noise)

    def get_metadata(self) -> GR00TMetadata:
        return self.metadata

    def modality_config(self) -> dict[str, dict[str, list]]:
        return self.metadata.modality_config()

    def prepare_inputs(self, observation: dict) -> dict[str, torch.Tensor]:
        """Batched observation dict -> model inputs (input_ids, attention_mask, pixel_values, state, embodiment_id)."""
        states = []
        for key, stats in self.metadata.state.items():
            if f"state.{key}" not in observation:
                raise KeyError(f"observation lacks 'state.{key}'; this checkpoint expects {list(self.modality_config()['state']['modality_keys'])}.")
            value = np.asarray(observation[f"state.{key}"], dtype=np.float32)[:, -1]
            if value.shape[-1] != len(stats["min"]):
                raise ValueError(f"state.{key} has {value.shape[-1]} dims, the checkpoint's statistics have {len(stats['min'])}.")
            states.append(normalize_min_max(value, stats))
        state = np.concatenate(states, axis=-1)
        batch = state.shape[0]
        state = np.pad(state, ((0, 0), (0, self.max_state_dim - state.shape[1])))[:, None]  # zero-pad to max_state_dim

        views = []  # per camera (B, T, 3, S, S); cameras may differ in resolution
        for camera in self.metadata.video:
            if f"video.{camera}" not in observation:
                raise KeyError(f"observation lacks 'video.{camera}'; this checkpoint expects {self.modality_config()['video']['modality_keys']}.")
            frames = np.asarray(observation[f"video.{camera}"], dtype=np.uint8)
            views.append(preprocess_images(frames.reshape(-1, *frames.shape[-3:])).unflatten(0, frames.shape[:2]))
        pixel_values = torch.stack(views, dim=2)  # (B, T, V, 3, S, S): Isaac's "(t v)" image order per sample
        images_per_sample = pixel_values.shape[1] * pixel_values.shape[2]

        prompts = [build_prompt(text, images_per_sample, self.model.tokens_per_image)
                   for text in instructions_from(observation, batch, self.metadata.language_key)]
        tokens = self.tokenizer(prompts, padding=True, return_tensors="pt")
        return {
            "input_ids": tokens["input_ids"].to(self.device),
            "attention_mask": tokens["attention_mask"].to(self.device),
            "pixel_values": pixel_values.flatten(0, 2).to(self.device),
            "state": torch.from_numpy(state).to(self.device),
            "embodiment_id": torch.full((batch,), self.embodiment_id, dtype=torch.long, device=self.device),
        }

    def get_action(self, observation: dict, generator: torch.Generator | None = None,
                   initial_noise: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Batched observation dict -> {action.<key>: float32 [B, 16, D_key]}; noise from `generator`
        if given, else from the policy's own (seeded by `seed`). `initial_noise` [B, 16, D], D the sum of the
        action keys' dims in their metadata order, is where the flow starts instead (in the model's normalized
        action space; the model's padding dims start at zero)."""
        states = [value for key, value in observation.items() if key.startswith("state.")]
        batched = not states or np.ndim(states[0]) == 3
        if not batched:  # Isaac's convention: state [T, D] means a single observation
            observation = {k: [v] if isinstance(v, str) else np.asarray(v)[None] for k, v in observation.items()}
        if initial_noise is not None:
            initial_noise = self._padded_noise(initial_noise if batched else np.asarray(initial_noise)[None])
        normalized = self.model.get_action(**self.prepare_inputs(observation), image_token_id=self.image_token_id,
                                           generator=generator or self.generator, noise_mode=self.noise,
                                           initial_noise=initial_noise).cpu().numpy()
        if self.clip_actions:
            normalized = np.clip(normalized, -1.0, 1.0)
        actions, start = {}, 0
        for key, stats in self.metadata.action.items():
            width = len(stats["min"])
            chunk = unnormalize_min_max(normalized[..., start:start + width], stats).astype(np.float32)
            actions[f"action.{key}"] = chunk if batched else chunk[0]
            start += width
        return actions

    def _padded_noise(self, noise: np.ndarray) -> torch.Tensor:
        """[B, horizon, D] flow starts of the action keys' dims -> [B, horizon, action_dim], zero-padded, on the device."""
        noise = np.asarray(noise, dtype=np.float32)
        horizon, width = self.model.action_head.action_horizon, sum(self.metadata.action_dims.values())
        if noise.ndim != 3 or noise.shape[1:] != (horizon, width) or not np.isfinite(noise).all():
            raise ValueError(f"initial_noise must be finite, of shape [B, {horizon}, {width}] (the action keys "
                             f"{self.metadata.action_dims}), got {list(noise.shape)}")
        padding = self.model.action_head.action_dim - width
        return torch.from_numpy(np.pad(noise, ((0, 0), (0, 0), (0, padding)))).to(self.device)
