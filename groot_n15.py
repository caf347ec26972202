"""GR00T N1.5 inference in one file: model, checkpoint loading, pre/post-processing, server protocol.

NVIDIA's GR00T N1.5 is a vision-language-action model. An Eagle 2.5 VLM (SigLIP vision encoder,
a linear projector, and the first 12 layers of Qwen3-1.7B) reads the camera images and the
instruction; a flow-matching action head (a 16-block DiT conditioned on the VLM tokens) turns
the robot state plus Gaussian noise into a 16-step chunk of actions in 4 Euler steps.

This file rebuilds that model on `transformers` building blocks and plain torch so that a
fine-tuned Isaac-GR00T checkpoint (config.json, safetensors, experiment_cfg/metadata.json)
loads with `load_state_dict(strict=True)`, and it speaks the official ZeroMQ inference-server
protocol, both as a client and as a server.

    policy = GR00TPolicy.from_pretrained("path/or/hub-id", device="cuda")
    chunk = policy.get_action({
        "video.front": uint8 [B, 1, H, W, 3], "video.wrist": ...,
        "state.single_arm": float [B, 1, 5], "state.gripper": float [B, 1, 1],
        "annotation.human.task_description": ["put the paper in the square"] * B,
    })  # -> {"action.single_arm": [B, 16, 5], "action.gripper": [B, 16, 1]}

    python groot_n15.py info  CHECKPOINT     # modality keys and statistics
    python groot_n15.py serve CHECKPOINT     # serve it on tcp://127.0.0.1:5555 (this machine only)
    python groot_n15.py convert CHECKPOINT SMALLER --dtype bfloat16   # weights stored in half the bytes
"""

from __future__ import annotations

import argparse
import contextlib
import hmac
import io
import ipaddress
import json
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import torch
import torch.nn.functional as F
import zmq
from torch import nn

# ---------------------------------------------------------------------------------------------
# Constants. The Eagle VLM hyperparameters are not stored in GR00T checkpoints: Isaac
# always builds the VLM from a vendored config, so we carry its values here.
# ---------------------------------------------------------------------------------------------

EAGLE_VISION_CONFIG = dict(  # SigLIP so400m at a fixed 224x224 resolution
    hidden_size=1152, intermediate_size=4304, num_hidden_layers=27, num_attention_heads=16,
    num_channels=3, image_size=224, patch_size=14, hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-6,
)
EAGLE_TEXT_CONFIG = dict(  # Qwen3-1.7B; num_hidden_layers is cut to backbone_cfg.select_layer
    vocab_size=151680, hidden_size=2048, intermediate_size=6144, num_hidden_layers=28,
    num_attention_heads=16, num_key_value_heads=8, head_dim=128, hidden_act="silu",
    max_position_embeddings=40960, rms_norm_eps=1e-6, rope_theta=1e6, tie_word_embeddings=True,
    use_cache=False,
)
# Isaac's projector index per embodiment: which slice of the category-specific action-head layers is used.
EMBODIMENT_TAG_TO_ID = {"new_embodiment": 31, "oxe_droid": 17, "agibot_genie1": 26, "gr1": 24}
DEFAULT_TOKENIZER = "lerobot/eagle2hg-processor-groot-n1p5"  # Eagle 2.5 tokenizer files
DEFAULT_LANGUAGE_KEY = "annotation.human.task_description"
DEFAULT_INSTRUCTION = "Perform the default behavior."  # what Isaac uses when no annotation is sent
TRAINING_RECORD = "experiment_cfg/finetune_groot.json"
"""how finetune_groot.py made a checkpoint (its joint units among it); Isaac's loader ignores the file"""
IMAGE_CONTEXT_TOKEN = "<IMG_CONTEXT>"
PROMPT_SPECIAL_TOKENS = ("<|im_start|>", "<|im_end|>", "<img>", "</img>", IMAGE_CONTEXT_TOKEN)
FUTURE_TOKENS_KEY = "action_head.future_tokens.weight"
EMBED_TOKENS_KEY = "backbone.eagle_model.language_model.model.embed_tokens.weight"
LM_HEAD_KEY = "backbone.eagle_model.language_model.lm_head.weight"
CROP_FRACTION = 0.95  # crop of the Isaac video transform: random at train time, centred at inference
COLOR_JITTER = {"brightness": 0.3, "contrast": 0.4, "saturation": 0.5, "hue": 0.08}  # Isaac's train-time VideoColorJitter
TOKENIZER_SUBDIR = "tokenizer"  # where a checkpoint carries its own tokenizer (small configurations do; Isaac's do not)
BYTE_TOKENIZER_SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", IMAGE_CONTEXT_TOKEN, "<img>", "</img>"]
BYTE_TOKENIZER_VOCAB_SIZE = 256 + len(BYTE_TOKENIZER_SPECIAL_TOKENS)  # see write_byte_tokenizer
# config.json of nvidia/GR00T-N1.5-3B (the fields Isaac's GR00T_N1_5 config holds; facts file section 1.5). Fine-tunes
# copy it, so it is also the template of configurations trained from scratch (with backbone_cfg.vision_config etc.).
N15_CONFIG = {
    "model_type": "gr00t_n1_5", "architectures": ["GR00T_N1_5"], "torch_dtype": "bfloat16", "transformers_version": "4.51.3",
    "action_horizon": 16, "action_dim": 32, "hidden_size": 2048, "model_dtype": "float32", "attn_implementation": None,
    "backbone_cfg": {
        "eagle_path": "NVEagle/eagle_er-qwen3_1_7B-Siglip2_400M_stage1_5_128gpu_er_v7_1mlp_nops", "select_layer": 12,
        "project_to_dim": None, "tune_llm": False, "tune_visual": True, "use_flash_attention": True, "load_bf16": False,
        "reproject_vision": False,
    },
    "action_head_cfg": {
        "action_dim": 32, "action_horizon": 16, "add_pos_embed": True, "backbone_embedding_dim": 2048, "hidden_size": 1024,
        "input_embedding_dim": 1536, "max_action_dim": 32, "max_state_dim": 64, "max_num_embodiments": 32, "max_seq_len": 1024,
        "model_dtype": "float32", "noise_beta_alpha": 1.5, "noise_beta_beta": 1.0, "noise_s": 0.999,
        "num_inference_timesteps": 4, "num_target_vision_tokens": 32, "num_timestep_buckets": 1000,
        "tune_diffusion_model": True, "tune_projector": True, "use_vlln": True,
        "diffusion_model_cfg": {
            "attention_head_dim": 48, "cross_attention_dim": 2048, "dropout": 0.2, "final_dropout": True,
            "interleave_self_attention": True, "norm_type": "ada_norm", "num_attention_heads": 32, "num_layers": 16,
            "output_dim": 1024, "positional_embeddings": None,
        },
        "vl_self_attention_cfg": {
            "attention_head_dim": 64, "dropout": 0.2, "final_dropout": True, "num_attention_heads": 32, "num_layers": 4,
            "positional_embeddings": None,
        },
    },
}
# Server request cap. One get_action for 64 envs x 2 cameras x 224x224x3 uint8 frames is 19.3 MB
# (states and text add a few kB), so 64 MB leaves room for about 3x that.
DEFAULT_MAX_MESSAGE_MB = 64

# ---------------------------------------------------------------------------------------------
# Model, part 1: the Eagle 2.5 backbone (SigLIP -> mlp1 -> Qwen3 cut to 12 layers).
# ---------------------------------------------------------------------------------------------


class EagleVLM(nn.Module):
    """Eagle 2.5 VLM as GR00T uses it: image tokens are spliced into the prompt embeddings, and
    the output is the final-norm hidden state of a Qwen3 decoder cut to `select_layer` layers."""

    def __init__(self, vision_config: dict, text_config: dict, attn_implementation: str = "sdpa"):
        super().__init__()
        from transformers import Qwen3Config, Qwen3ForCausalLM, SiglipVisionConfig, SiglipVisionModel

        # The pooling head (`vision_use_head`, on by default) is unused by GR00T but stored in
        # its checkpoints, so it is built for strict loading; it costs <1 % of the vision tower.
        siglip = SiglipVisionModel(SiglipVisionConfig(**vision_config, attn_implementation=attn_implementation))
        # Isaac keys read `vision_model.vision_model.*`. transformers 4.x nests SigLIP's
        # transformer under `.vision_model` itself; 5.x flattened it, so add the level back.
        self.vision_model = siglip if hasattr(siglip, "vision_model") else nn.ModuleDict({"vision_model": siglip})
        vision_dim, text_dim = vision_config["hidden_size"], text_config["hidden_size"]
        self.mlp1 = nn.Sequential(nn.Linear(vision_dim, text_dim))  # no pixel shuffle in N1.5
        self.language_model = Qwen3ForCausalLM(Qwen3Config(**text_config, attn_implementation=attn_implementation))
        self.tokens_per_image = (vision_config["image_size"] // vision_config["patch_size"]) ** 2

    def forward(self, input_ids, attention_mask, pixel_values, image_token_id: int) -> torch.Tensor:
        """(B, L) token ids with `image_token_id` placeholders, (B*V, 3, 224, 224) images -> (B, L, D)."""
        image_tokens = self.mlp1(self.vision_model.vision_model(pixel_values=pixel_values).last_hidden_state)
        embeddings = self.language_model.get_input_embeddings()(input_ids)
        is_image = input_ids == image_token_id
        if int(is_image.sum()) != image_tokens.shape[0] * image_tokens.shape[1]:
            raise ValueError(
                f"the prompt has {int(is_image.sum())} image placeholder tokens but the images give "
                f"{image_tokens.shape[0]} x {image_tokens.shape[1]} features; was the prompt built for this view count?"
            )
        # Placeholders are filled in row-major (sample, image, patch) order.
        embeddings = embeddings.masked_scatter(is_image[..., None], image_tokens.to(embeddings.dtype))
        # The decoder has exactly `select_layer` layers, so last_hidden_state = norm(last layer),
        # the feature Isaac reads; lm_head logits are never needed. Position ids are 0..L-1 even
        # with left padding, as in Isaac.
        return self.language_model.model(inputs_embeds=embeddings, attention_mask=attention_mask).last_hidden_state


# ---------------------------------------------------------------------------------------------
# Model, part 2: the flow-matching action head (plain torch; names follow the Isaac keys).
# ---------------------------------------------------------------------------------------------


def sinusoidal_embedding(t: torch.Tensor, dim: int, cos_first: bool, freq_shift: int) -> torch.Tensor:
    """Sinusoidal features of t (any shape) -> (..., dim), frequencies exp(-ln(1e4) * i / (dim/2 - shift)).

    The DiT timestep encoder uses [cos, sin] with shift 1 (diffusers `Timesteps`), the action
    encoder [sin, cos] with shift 0; mixing them up silently breaks real checkpoints."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / (half - freq_shift))
    angles = t.float()[..., None] * freqs
    parts = (angles.cos(), angles.sin()) if cos_first else (angles.sin(), angles.cos())
    return torch.cat(parts, dim=-1)


class CategorySpecificLinear(nn.Module):
    """One linear layer per embodiment: y = x @ W[id] + b[id]. W is (E, in, out), not transposed."""

    def __init__(self, num_categories: int, in_dim: int, out_dim: int):
        super().__init__()
        self.W = nn.Parameter(torch.empty(num_categories, in_dim, out_dim))
        self.b = nn.Parameter(torch.zeros(num_categories, out_dim))
        nn.init.normal_(self.W, std=0.02)

    def forward(self, x: torch.Tensor, embodiment_id: torch.Tensor) -> torch.Tensor:
        return torch.bmm(x, self.W[embodiment_id]) + self.b[embodiment_id][:, None]


class CategorySpecificMLP(nn.Module):
    """Per-embodiment two-layer ReLU MLP (state encoder, action decoder)."""

    def __init__(self, num_categories: int, in_dim: int, hidden_dim: int, out_dim: int):
        super().__init__()
        self.layer1 = CategorySpecificLinear(num_categories, in_dim, hidden_dim)
        self.layer2 = CategorySpecificLinear(num_categories, hidden_dim, out_dim)

    def forward(self, x: torch.Tensor, embodiment_id: torch.Tensor) -> torch.Tensor:
        return self.layer2(F.relu(self.layer1(x, embodiment_id)), embodiment_id)


class MultiEmbodimentActionEncoder(nn.Module):
    """Noisy action chunk + flow timestep -> one token per step: W3(swish(W2([W1(a), sin-cos(t)])))."""

    def __init__(self, num_categories: int, action_dim: int, dim: int):
        super().__init__()
        self.dim = dim
        self.W1 = CategorySpecificLinear(num_categories, action_dim, dim)
        self.W2 = CategorySpecificLinear(num_categories, 2 * dim, dim)
        self.W3 = CategorySpecificLinear(num_categories, dim, dim)

    def forward(self, actions, timestep, embodiment_id):
        action_tokens = self.W1(actions, embodiment_id)
        time_tokens = sinusoidal_embedding(timestep[:, None].expand(-1, actions.shape[1]), self.dim, cos_first=False, freq_shift=0)
        x = self.W2(torch.cat([action_tokens, time_tokens.to(action_tokens.dtype)], dim=-1), embodiment_id)
        return self.W3(F.silu(x), embodiment_id)


class Attention(nn.Module):
    """Multi-head attention with biased q/k/v/out projections (diffusers `Attention` key layout)."""

    def __init__(self, dim: int, heads: int, head_dim: int, context_dim: int | None, dropout: float):
        super().__init__()
        self.heads = heads
        inner = heads * head_dim
        self.to_q = nn.Linear(dim, inner)
        self.to_k = nn.Linear(context_dim or dim, inner)
        self.to_v = nn.Linear(context_dim or dim, inner)
        self.to_out = nn.Sequential(nn.Linear(inner, dim), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        context = x if context is None else context

        def split_heads(t: torch.Tensor) -> torch.Tensor:  # (B, L, H*d) -> (B, H, L, d)
            return t.unflatten(-1, (self.heads, -1)).transpose(1, 2)

        q, k, v = split_heads(self.to_q(x)), split_heads(self.to_k(context)), split_heads(self.to_v(context))
        # No mask anywhere in the action head: Isaac ignores the VL padding mask here.
        return self.to_out(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).flatten(2))


class GELUProjection(nn.Module):
    """Linear followed by tanh-GELU (diffusers `GELU(approximate="tanh")`, key `proj`)."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.proj = nn.Linear(in_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.proj(x), approximate="tanh")


class FeedForward(nn.Module):
    """dim -> 4*dim (tanh-GELU) -> dim. The dropouts sit at indices 1 and 3 as in diffusers, so the
    keys read ff.net.0.proj / ff.net.2; they are inactive at inference."""

    def __init__(self, dim: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(GELUProjection(dim, 4 * dim), nn.Dropout(dropout), nn.Linear(4 * dim, dim), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class AdaLayerNorm(nn.Module):
    """LayerNorm without affine, modulated by the timestep embedding: LN(x) * (1 + scale) + shift."""

    def __init__(self, dim: int):
        super().__init__()
        self.linear = nn.Linear(dim, 2 * dim)
        self.norm = nn.LayerNorm(dim, eps=1e-5, elementwise_affine=False)

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        scale, shift = self.linear(F.silu(temb)).chunk(2, dim=-1)  # (scale, shift) order, see proj_out_1
        return self.norm(x) * (1 + scale[:, None]) + shift[:, None]


class TransformerBlock(nn.Module):
    """Pre-norm block: x += Attn(norm1(x)); x += FF(norm3(x)).

    `timestep_conditioned` selects the DiT flavour (adaLN norm1, non-affine norm3) over the plain
    LayerNorm flavour of the VL self-attention stack. With `context_dim` the attention is cross-attention."""

    def __init__(self, dim, heads, head_dim, dropout, context_dim=None, timestep_conditioned=False):
        super().__init__()
        self.norm1 = AdaLayerNorm(dim) if timestep_conditioned else nn.LayerNorm(dim, eps=1e-5)
        self.attn1 = Attention(dim, heads, head_dim, context_dim, dropout)
        # Isaac's blocks (`final_dropout=True`) drop the attention output once more, after to_out's own
        # dropout. No parameters, and an identity at inference: it matters only when training.
        self.final_dropout = nn.Dropout(dropout)
        self.norm3 = nn.LayerNorm(dim, eps=1e-5, elementwise_affine=not timestep_conditioned)
        self.ff = FeedForward(dim, dropout)

    def forward(self, x, context=None, temb=None):
        normed = self.norm1(x) if temb is None else self.norm1(x, temb)
        x = x + self.final_dropout(self.attn1(normed, context))
        return x + self.ff(self.norm3(x))


class TimestepEmbedding(nn.Module):
    """linear_1 -> SiLU -> linear_2 (diffusers `TimestepEmbedding` key layout)."""

    def __init__(self, in_dim: int, dim: int):
        super().__init__()
        self.linear_1 = nn.Linear(in_dim, dim)
        self.linear_2 = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(F.silu(self.linear_1(x)))


class TimestepEncoder(nn.Module):
    """Discretized flow timestep (0..999) -> (B, dim) conditioning vector for the DiT."""

    def __init__(self, dim: int, num_channels: int = 256):
        super().__init__()
        self.num_channels = num_channels
        self.timestep_embedder = TimestepEmbedding(num_channels, dim)

    def forward(self, timestep: torch.Tensor) -> torch.Tensor:
        features = sinusoidal_embedding(timestep, self.num_channels, cos_first=True, freq_shift=1)
        return self.timestep_embedder(features.to(self.timestep_embedder.linear_1.weight.dtype))


class DiT(nn.Module):
    """Diffusion transformer over [state | future tokens | action tokens]. Even blocks cross-attend
    to the VL tokens, odd blocks self-attend (`interleave_self_attention`); every block is adaLN-
    conditioned on the timestep, and so is the output layer."""

    def __init__(self, num_layers, num_attention_heads, attention_head_dim, cross_attention_dim, output_dim, dropout):
        super().__init__()
        dim = num_attention_heads * attention_head_dim
        self.timestep_encoder = TimestepEncoder(dim)
        self.transformer_blocks = nn.ModuleList(
            TransformerBlock(dim, num_attention_heads, attention_head_dim, dropout,
                             context_dim=cross_attention_dim if i % 2 == 0 else None, timestep_conditioned=True)
            for i in range(num_layers)
        )
        self.norm_out = nn.LayerNorm(dim, eps=1e-6, elementwise_affine=False)
        self.proj_out_1 = nn.Linear(dim, 2 * dim)
        self.proj_out_2 = nn.Linear(dim, output_dim)

    def forward(self, x, vl_tokens, timestep):
        temb = self.timestep_encoder(timestep)
        for i, block in enumerate(self.transformer_blocks):
            x = block(x, context=vl_tokens if i % 2 == 0 else None, temb=temb)
        shift, scale = self.proj_out_1(F.silu(temb)).chunk(2, dim=-1)  # (shift, scale): reversed vs AdaLayerNorm
        return self.proj_out_2(self.norm_out(x) * (1 + scale[:, None]) + shift[:, None])


class SelfAttentionTransformer(nn.Module):
    """The `vl_self_attention` stack: plain self-attention blocks over the VLM tokens, no final norm."""

    def __init__(self, num_layers, num_attention_heads, attention_head_dim, dropout):
        super().__init__()
        dim = num_attention_heads * attention_head_dim
        self.transformer_blocks = nn.ModuleList(
            TransformerBlock(dim, num_attention_heads, attention_head_dim, dropout) for _ in range(num_layers)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.transformer_blocks:
            x = block(x)
        return x


class FlowMatchingActionHead(nn.Module):
    """State + VL tokens -> action chunk by Euler-integrating a learned velocity field from noise (t=0) to data (t=1).

    `forward` samples a chunk (inference); `loss` is the flow-matching training loss of the same network."""

    def __init__(self, cfg: dict, future_tokens: bool):
        super().__init__()
        num_embodiments = cfg.get("max_num_embodiments", 32)
        dim, hidden = cfg["input_embedding_dim"], cfg["hidden_size"]
        self.action_horizon, self.action_dim = cfg["action_horizon"], cfg["action_dim"]
        self.num_steps = cfg.get("num_inference_timesteps", 4)
        self.num_timestep_buckets = cfg.get("num_timestep_buckets", 1000)
        # Training-time flow times: s ~ Beta(alpha, beta), t = (noise_s - s) / noise_s.
        self.noise_beta_alpha, self.noise_beta_beta = cfg.get("noise_beta_alpha", 1.5), cfg.get("noise_beta_beta", 1.0)
        self.noise_s = cfg.get("noise_s", 0.999)
        self.vlln = nn.LayerNorm(cfg["backbone_embedding_dim"], eps=1e-5)
        vl, dit = cfg["vl_self_attention_cfg"], cfg["diffusion_model_cfg"]
        self.vl_self_attention = SelfAttentionTransformer(vl["num_layers"], vl["num_attention_heads"], vl["attention_head_dim"], vl.get("dropout", 0.0))
        self.model = DiT(dit["num_layers"], dit["num_attention_heads"], dit["attention_head_dim"],
                         dit["cross_attention_dim"], dit["output_dim"], dit.get("dropout", 0.0))
        self.state_encoder = CategorySpecificMLP(num_embodiments, cfg["max_state_dim"], hidden, dim)
        self.action_encoder = MultiEmbodimentActionEncoder(num_embodiments, self.action_dim, dim)
        self.action_decoder = CategorySpecificMLP(num_embodiments, hidden, hidden, self.action_dim)
        # Checkpoints trained with Isaac code of June-July 2025 lack the learned future tokens.
        self.future_tokens = nn.Embedding(cfg.get("num_target_vision_tokens", 32), dim) if future_tokens else None
        self.position_embedding = nn.Embedding(cfg.get("max_seq_len", 1024), dim)

    def prefix_tokens(self, state: torch.Tensor, embodiment_id: torch.Tensor) -> list[torch.Tensor]:
        """The DiT tokens before the actions: [state token (B, 1, dim)] + [future tokens (B, 32, dim)] if present."""
        prefix = [self.state_encoder(state, embodiment_id)]
        if self.future_tokens is not None:
            prefix.append(self.future_tokens.weight.expand(state.shape[0], -1, -1))
        return prefix

    def velocity(self, actions, timestep, prefix, vl_tokens, embodiment_id) -> torch.Tensor:
        """Predicted flow velocity (B, horizon, action_dim) at noisy `actions` and integer `timestep` (B,)."""
        positions = self.position_embedding.weight[: self.action_horizon]
        action_tokens = self.action_encoder(actions, timestep, embodiment_id) + positions
        tokens = self.model(torch.cat(prefix + [action_tokens], dim=1), vl_tokens, timestep)
        return self.action_decoder(tokens, embodiment_id)[:, -self.action_horizon:]

    def forward(self, vl_features, state, embodiment_id, generator: torch.Generator | None = None,
                noise_mode: str = "random") -> torch.Tensor:
        """(B, L, D) VLM features, (B, 1, max_state_dim) normalized state -> (B, horizon, action_dim) normalized actions.
        The flow starts from a Gaussian draw (`noise_mode="random"`, Isaac's), or from its mean (`"zero"`)."""
        batch, device = state.shape[0], vl_features.device
        vl_tokens = self.vl_self_attention(self.vlln(vl_features))
        prefix = self.prefix_tokens(state, embodiment_id)
        shape = (batch, self.action_horizon, self.action_dim)
        if noise_mode == "zero":
            actions = torch.zeros(shape, device=device, dtype=vl_tokens.dtype)
        else:
            # Drawn in float32 on the generator's device so a seed gives the same sample on any device/dtype.
            noise_device = generator.device if generator is not None else torch.device("cpu")
            actions = torch.randn(shape, generator=generator, device=noise_device)
            actions = actions.to(device=device, dtype=vl_tokens.dtype)  # Isaac integrates in the VL tokens' dtype too
        dt = 1.0 / self.num_steps
        for step in range(self.num_steps):
            # Isaac discretizes t = step/N into buckets: 0, 250, 500, 750 for 4 steps.
            timestep = torch.full((batch,), int(step / self.num_steps * self.num_timestep_buckets), device=device)
            actions = actions + dt * self.velocity(actions, timestep, prefix, vl_tokens, embodiment_id)
        return actions

    def sample_time(self, batch: int, device, dtype=torch.float32) -> torch.Tensor:
        """Training flow times (B,) as Isaac draws them: s ~ Beta(1.5, 1.0) on the CPU generator, t = (0.999 - s) / 0.999.

        t leans toward the noise end (mean 0.40) and can be a hair below 0 (when s > 0.999)."""
        beta = torch.distributions.Beta(float(self.noise_beta_alpha), float(self.noise_beta_beta))
        return (self.noise_s - beta.sample([batch]).to(device, dtype=dtype)) / self.noise_s

    def loss(self, vl_features, state, actions, action_mask, embodiment_id,
             noise: torch.Tensor | None = None, t: torch.Tensor | None = None) -> torch.Tensor:
        """Flow-matching loss of Isaac's N1.5 action head (`FlowmatchingActionHead.forward`), one scalar.

        actions (B, horizon, action_dim) normalized and zero-padded, action_mask the same shape (1 on
        the real action dims of valid steps). `noise` (like actions) and `t` (B,) default to Isaac's draws,
        in Isaac's order (noise, then t, after the VL dropout): pass them to check the loss on fixed draws.
            x_t = (1 - t) * noise + t * actions,   target velocity = actions - noise,
            timestep = int64(t * 1000) (truncation) for the action encoder and the DiT,
            loss = sum(mask * (v_pred - target)^2) / sum(mask), one masked mean over the whole batch."""
        vl_tokens = self.vl_self_attention(self.vlln(vl_features))
        prefix = self.prefix_tokens(state, embodiment_id)
        if noise is None:
            noise = torch.randn(actions.shape, device=actions.device, dtype=actions.dtype)
        if t is None:
            t = self.sample_time(actions.shape[0], actions.device, actions.dtype)
        t = t.to(device=actions.device, dtype=actions.dtype)
        noisy = (1 - t[:, None, None]) * noise + t[:, None, None] * actions
        target = actions - noise
        timestep = (t * self.num_timestep_buckets).long()
        predicted = self.velocity(noisy, timestep, prefix, vl_tokens, embodiment_id)
        return (F.mse_loss(predicted, target, reduction="none") * action_mask).sum() / action_mask.sum()


class GR00TN15(nn.Module):
    """GR00T N1.5: `backbone.eagle_model` (EagleVLM) + `action_head` (FlowMatchingActionHead).

    `config` is the checkpoint's config.json. Its optional `backbone_cfg.vision_config` and
    `backbone_cfg.text_config` override the Eagle defaults (real checkpoints have neither; tests
    use them to build tiny models)."""

    def __init__(self, config: dict, future_tokens: bool = True, attn_implementation: str = "sdpa"):
        super().__init__()
        backbone_cfg = config.get("backbone_cfg", {})
        vision = {**EAGLE_VISION_CONFIG, **backbone_cfg.get("vision_config", {})}
        text = {**EAGLE_TEXT_CONFIG, **backbone_cfg.get("text_config", {})}
        text["num_hidden_layers"] = backbone_cfg.get("select_layer", 12)
        # The extra `eagle_model` level only mirrors the Isaac key names.
        self.backbone = nn.ModuleDict({"eagle_model": EagleVLM(vision, text, attn_implementation)})
        self.action_head = FlowMatchingActionHead(config["action_head_cfg"], future_tokens)
        self.config = config  # written back as config.json by `save_checkpoint`
        self.image_size = vision["image_size"]
        self.frozen_modules: tuple[str, ...] = ()  # kept in eval mode by train(); see set_trainable_parameters

    @property
    def tokens_per_image(self) -> int:
        return self.backbone["eagle_model"].tokens_per_image

    def set_trainable_parameters(self, tune_llm: bool = False, tune_visual: bool = False, tune_projector: bool = True,
                                 tune_diffusion_model: bool = True) -> None:
        """Freeze what Isaac's four tune flags freeze (defaults: Isaac's and phospho's fine-tuning defaults).

        tune_llm: the Qwen3 layers and token embeddings; tune_visual: SigLIP and the mlp1 projector;
        tune_projector: the action head's state encoder, action encoder, action decoder and position
        embedding; tune_diffusion_model: the DiT. The VL LayerNorm, the VL self-attention and the future
        tokens always train, as in Isaac. Frozen modules also stay in eval mode (no dropout) under train()."""
        head, vlm = "action_head.", "backbone.eagle_model."
        groups = {
            vlm + "language_model": tune_llm, vlm + "vision_model": tune_visual, vlm + "mlp1": tune_visual,
            head + "state_encoder": tune_projector, head + "action_encoder": tune_projector,
            head + "action_decoder": tune_projector, head + "position_embedding": tune_projector,
            head + "model": tune_diffusion_model,
        }
        self.requires_grad_(True)
        for name, tune in groups.items():
            self.get_submodule(name).requires_grad_(tune)
        self.frozen_modules = tuple(name for name, tune in groups.items() if not tune)
        self.train(self.training)

    def train(self, mode: bool = True) -> GR00TN15:
        super().train(mode)
        for name in self.frozen_modules if mode else ():
            self.get_submodule(name).eval()
        return self

    def forward(self, input_ids, attention_mask, pixel_values, state, actions, action_mask, embodiment_id,
                image_token_id: int, noise: torch.Tensor | None = None, t: torch.Tensor | None = None) -> torch.Tensor:
        """Training: model inputs (as GR00TPolicy.prepare_inputs gives them) + the normalized, padded action
        chunk (B, horizon, action_dim) and its mask -> the flow-matching loss (FlowMatchingActionHead.loss).
        Mixed precision is the caller's choice (Isaac trains float32 weights under bf16 autocast)."""
        features = self.backbone["eagle_model"](input_ids, attention_mask, pixel_values, image_token_id)
        return self.action_head.loss(features, state, actions, action_mask, embodiment_id, noise=noise, t=t)

    @torch.inference_mode()
    def get_action(self, input_ids, attention_mask, pixel_values, state, embodiment_id, image_token_id: int,
                   generator: torch.Generator | None = None, noise_mode: str = "random") -> torch.Tensor:
        """Model inputs (see GR00TPolicy.prepare_inputs) -> normalized action chunk (B, action_horizon, action_dim), float32."""
        dtype = self.action_head.vlln.weight.dtype
        # Isaac runs bf16 weights under bf16 autocast, so norms and softmax compute in fp32; mirror that.
        with torch.autocast(pixel_values.device.type, dtype=dtype, enabled=dtype != torch.float32):
            features = self.backbone["eagle_model"](input_ids, attention_mask, pixel_values.to(dtype), image_token_id)
            return self.action_head(features, state.to(dtype), embodiment_id, generator, noise_mode).float()


# ---------------------------------------------------------------------------------------------
# Checkpoint loading and saving.
# ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def parameters_on_meta_device():
    """Create every nn.Parameter on the meta device (no memory, no random init) while buffers stay real.

    Loading then assigns the checkpoint tensors. `with torch.device("meta")` alone would also put
    the non-persistent buffers (rotary frequencies, SigLIP position ids) on meta, and checkpoints
    do not hold them. Same idea as accelerate's `init_empty_weights(include_buffers=False)`."""
    register_parameter = nn.Module.register_parameter

    def register_on_meta(module, name, param):
        if param is not None and param.device.type != "meta":  # re-registering a meta one (weight tying) keeps it
            param = nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)
        register_parameter(module, name, param)

    nn.Module.register_parameter = register_on_meta
    try:
        yield
    finally:
        nn.Module.register_parameter = register_parameter


def resolve_source(source: str | Path, what: str, allow_patterns: list[str], revision: str | None = None) -> Path:
    """A local directory as is; otherwise treat `source` as a Hugging Face hub id and download the matching files."""
    path = Path(source).expanduser()
    if path.is_dir():
        return path
    looks_like_hub_id = str(source).count("/") == 1 and not str(source).startswith((".", "/", "~"))
    if not looks_like_hub_id:
        raise FileNotFoundError(f"{what} {str(source)!r} is not a directory (nor a Hugging Face hub id like 'owner/name').")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(str(source), revision=revision, allow_patterns=allow_patterns))
    except Exception as err:  # the hub client raises many error types (offline, 404, auth); all mean the same here
        raise FileNotFoundError(
            f"{what} {str(source)!r} is not a local directory and could not be downloaded from the Hugging Face Hub "
            f"({type(err).__name__}: {err}). Pass a local directory, or check the hub id, revision and network."
        ) from err


def resolve_checkpoint(checkpoint: str | Path, revision: str | None = None, weights: bool = True) -> Path:
    """Checkpoint directory holding config.json and experiment_cfg/metadata.json (and the weights if `weights`)."""
    patterns = ["config.json", "model.safetensors.index.json", "experiment_cfg/*", f"{TOKENIZER_SUBDIR}/*"] + (["*.safetensors"] if weights else [])
    directory = resolve_source(checkpoint, "GR00T checkpoint", patterns, revision)
    if not (directory / "config.json").is_file():
        raise FileNotFoundError(
            f"{directory / 'config.json'} is missing: not an Isaac-GR00T N1.5 checkpoint directory "
            "(expected config.json, model.safetensors or sharded model-*.safetensors with model.safetensors.index.json, "
            "and experiment_cfg/metadata.json)."
        )
    if not (directory / "experiment_cfg" / "metadata.json").is_file():
        raise FileNotFoundError(
            f"{directory / 'experiment_cfg' / 'metadata.json'} is missing. It holds the embodiment's modality keys and "
            "normalization statistics, without which states cannot be normalized nor actions unnormalized. "
            "Isaac-GR00T fine-tuning writes it into the output directory: copy experiment_cfg/ from the training run."
        )
    return directory


def safetensors_files(directory: Path) -> list[Path]:
    """The weight files: the shards named by model.safetensors.index.json, else model.safetensors."""
    index = directory / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        missing = [name for name in shards if not (directory / name).is_file()]
        if missing:
            raise FileNotFoundError(f"{index} names shards that are not in {directory}: {missing}")
        return [directory / name for name in shards]
    if (directory / "model.safetensors").is_file():
        return [directory / "model.safetensors"]
    raise FileNotFoundError(f"no weights in {directory}: expected model.safetensors or model.safetensors.index.json with its shards.")


def convert_checkpoint(source: str | Path, destination: str | Path, dtype: torch.dtype) -> Path:
    """Copy checkpoint directory `source` to `destination` (new or empty) with its floating-point weights
    stored as `dtype`, e.g. bfloat16 for half the size. Every other file, config.json included (and so
    the dtype inference runs in by default), is copied as it is."""
    import shutil

    from safetensors import safe_open
    from safetensors.torch import save_file

    source, destination = Path(source), Path(destination)
    weights = safetensors_files(source)
    if destination.exists() and (not destination.is_dir() or any(destination.iterdir())):
        raise FileExistsError(f"{destination} exists and is not an empty directory; convert_checkpoint writes a new one")
    shutil.copytree(source, destination, dirs_exist_ok=True,
                    ignore=lambda folder, names: [name for name in names if Path(folder, name) in weights])
    total = 0
    for file in weights:
        with safe_open(str(file), framework="pt") as handle:
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
            file_metadata = handle.metadata()
        tensors = {key: t.to(dtype) if t.is_floating_point() else t for key, t in tensors.items()}
        total += sum(t.numel() * t.element_size() for t in tensors.values())
        save_file(tensors, destination / file.name, metadata=file_metadata)
    index = destination / "model.safetensors.index.json"
    if index.is_file():  # the shards' total size changed with the dtype
        content = json.loads(index.read_text())
        content.setdefault("metadata", {})["total_size"] = total
        index.write_text(json.dumps(content, indent=2))
    return destination


def load_state_dict(files: list[Path], dtype: torch.dtype, device: str | torch.device) -> dict[str, torch.Tensor]:
    """Read all tensors, cast to `dtype`. lm_head is tied to embed_tokens: checkpoints store either
    or both, so whichever is present fills both names with one shared tensor."""
    from safetensors import safe_open

    state = {}
    for file in files:
        with safe_open(str(file), framework="pt", device=str(device)) as handle:
            for key in handle.keys():
                if key == LM_HEAD_KEY and EMBED_TOKENS_KEY in state:
                    continue
                state[key] = handle.get_tensor(key).to(dtype)
    embedding = state.get(EMBED_TOKENS_KEY, state.get(LM_HEAD_KEY))
    if embedding is not None:
        state[EMBED_TOKENS_KEY] = state[LM_HEAD_KEY] = embedding
    return state


def build_model(config: dict, future_tokens: bool = True, attn_implementation: str = "sdpa") -> GR00TN15:
    """The architecture with parameters on the meta device, ready for `load_state_dict(assign=True)`."""
    with parameters_on_meta_device():
        return GR00TN15(config, future_tokens, attn_implementation)


def load_model(checkpoint_dir: Path, dtype: torch.dtype = torch.bfloat16, device: str | torch.device = "cpu",
               attn_implementation: str = "sdpa") -> GR00TN15:
    """Build GR00T N1.5 from an Isaac-format checkpoint directory and load its weights strictly."""
    config = json.loads((checkpoint_dir / "config.json").read_text())
    state = load_state_dict(safetensors_files(checkpoint_dir), dtype, device)
    model = build_model(config, future_tokens=FUTURE_TOKENS_KEY in state, attn_implementation=attn_implementation)
    expected = set(model.state_dict())
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise ValueError(
            f"{checkpoint_dir} does not match the GR00T N1.5 architecture: missing {missing[:5]} "
            f"({len(missing)} in all), unexpected {unexpected[:5]} ({len(unexpected)} in all). "
            "This loader reads Isaac-GR00T checkpoints; LeRobot-format ones prefix every key with `_groot_model.`."
        )
    model.load_state_dict(state, strict=True, assign=True)
    return model.to(device).eval()


def load_tokenizer(source: str | Path = DEFAULT_TOKENIZER):
    """The Eagle 2.5 tokenizer (Qwen3 vocabulary + image tokens), left-padding, from a directory or hub id."""
    directory = resolve_source(source, "GR00T tokenizer (--groot-tokenizer)", ["*.json", "merges.txt"])
    has_vocab = (directory / "tokenizer.json").is_file() or all((directory / f).is_file() for f in ("vocab.json", "merges.txt"))
    missing = [f for f in ("tokenizer_config.json",) if not (directory / f).is_file()] + ([] if has_vocab else ["vocab.json + merges.txt (or tokenizer.json)"])
    if missing:
        raise FileNotFoundError(
            f"GR00T tokenizer directory {directory} lacks {', '.join(missing)}. Pass --groot-tokenizer with a "
            f"directory or hub id holding the Eagle 2.5 tokenizer files (default {DEFAULT_TOKENIZER}; Isaac-GR00T "
            "vendors them in gr00t/model/backbone/eagle2_hg_model/)."
        )
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(directory))
    unknown = [t for t in PROMPT_SPECIAL_TOKENS if t not in tokenizer.get_vocab()]
    if unknown:
        raise ValueError(f"tokenizer in {directory} lacks the special tokens {unknown} that the GR00T prompt needs; is it the Eagle 2.5 tokenizer?")
    tokenizer.padding_side = "left"  # as Isaac's processor
    if tokenizer.pad_token is None:
        tokenizer.pad_token = "<|endoftext|>"
    return tokenizer


def checkpoint_tokenizer(directory: Path) -> Path | None:
    """The tokenizer a checkpoint directory carries, if any: its `tokenizer/` folder (what `save_checkpoint`
    writes), or the directory itself when it holds tokenizer_config.json. Isaac checkpoints carry none."""
    for candidate in (directory / TOKENIZER_SUBDIR, directory):
        if (candidate / "tokenizer_config.json").is_file():
            return candidate
    return None


def write_byte_tokenizer(directory: Path) -> Path:
    """A byte-level BPE tokenizer in the Eagle/Qwen2 file layout (vocab.json + merges.txt, no merges) with the
    special tokens the GR00T prompt needs: BYTE_TOKENIZER_VOCAB_SIZE ids, every text one token per UTF-8 byte.
    Small configurations trained from scratch use it (Eagle's 151,680 ids would dwarf their embeddings)."""
    from tokenizers.pre_tokenizers import ByteLevel

    directory.mkdir(parents=True, exist_ok=True)
    vocab = {symbol: i for i, symbol in enumerate(sorted(ByteLevel.alphabet()))}
    (directory / "vocab.json").write_text(json.dumps(vocab))
    (directory / "merges.txt").write_text("#version: 0.2\n")
    (directory / "added_tokens.json").write_text(json.dumps({t: len(vocab) + i for i, t in enumerate(BYTE_TOKENIZER_SPECIAL_TOKENS)}))
    (directory / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "Qwen2Tokenizer", "pad_token": "<|endoftext|>", "eos_token": "<|im_end|>",
        "additional_special_tokens": BYTE_TOKENIZER_SPECIAL_TOKENS[1:], "model_max_length": 131072,
    }))
    return directory


def save_checkpoint(model: GR00TN15, directory: str | Path, metadata: dict, tokenizer=None,
                    max_shard_bytes: int = 5 * 1024**3) -> Path:
    """Write `model` in the Isaac on-disk format into `directory` (created; it must not exist or be empty).

    config.json (`model.config`); the weights in their dtype as model.safetensors, or past `max_shard_bytes`
    as model-0000k-of-0000n.safetensors shards with model.safetensors.index.json (HF's layout and 5 GiB
    default); experiment_cfg/metadata.json (`metadata`: the {embodiment_tag: {statistics, modalities,
    embodiment_tag}} layout `load_metadata` and Isaac read, checked here); and, with `tokenizer`, its files in
    tokenizer/, which `GR00TPolicy.from_pretrained` then prefers to the default Eagle tokenizer. The tied
    lm_head is not stored (loaders fill it from embed_tokens, as for HF's save_pretrained)."""
    from safetensors.torch import save_file

    for tag in metadata:
        GR00TMetadata.from_json(metadata, tag)  # fails here, not in the loader, on a malformed layout
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if any(directory.iterdir()):
        raise FileExistsError(f"{directory} is not empty; save_checkpoint writes into a new or empty directory")
    state = {key: value.detach().cpu().contiguous() for key, value in model.state_dict().items() if key != LM_HEAD_KEY}
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for key, tensor in state.items():
        nbytes = tensor.numel() * tensor.element_size()
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][key] = tensor
        size += nbytes
    if len(shards) == 1:
        save_file(state, directory / "model.safetensors", metadata={"format": "pt"})
    else:
        weight_map = {}
        for number, shard in enumerate(shards, start=1):
            name = f"model-{number:05d}-of-{len(shards):05d}.safetensors"
            save_file(shard, directory / name, metadata={"format": "pt"})
            weight_map |= dict.fromkeys(shard, name)
        total = sum(t.numel() * t.element_size() for t in state.values())
        (directory / "model.safetensors.index.json").write_text(
            json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
    (directory / "config.json").write_text(json.dumps(model.config, indent=2))
    (directory / "experiment_cfg").mkdir()
    (directory / "experiment_cfg" / "metadata.json").write_text(json.dumps(metadata, indent=2))
    if tokenizer is not None:
        tokenizer.save_pretrained(str(directory / TOKENIZER_SUBDIR))
    return directory


# ---------------------------------------------------------------------------------------------
# Metadata, pre-processing and post-processing.
# ---------------------------------------------------------------------------------------------


@dataclass
class GR00TMetadata:
    """What experiment_cfg/metadata.json says about one embodiment, in concatenation order.

    `video` maps a camera name (e.g. "front") to {"resolution": [W, H], "channels", "fps"};
    `state`/`action` map a key name (e.g. "single_arm") to its statistics {"min", "max", "mean",
    "std", "q01", "q99"} as float arrays of length D_key. Observation/action dict keys carry a
    "video." / "state." / "action." prefix; the names here do not. Statistics reveal units:
    values within +-pi suggest radians, within +-100 LeRobot's normalized range, else degrees."""

    embodiment_tag: str
    video: dict[str, dict]
    state: dict[str, dict[str, np.ndarray]]
    action: dict[str, dict[str, np.ndarray]]
    language_key: str = DEFAULT_LANGUAGE_KEY
    action_horizon: int = 16
    joint_units: str | None = None
    """units of the joints the checkpoint was trained in, when its TRAINING_RECORD says (else read the statistics)"""

    @classmethod
    def from_json(cls, metadata: dict, embodiment_tag: str, action_horizon: int = 16) -> GR00TMetadata:
        """Parse the {tag: DatasetMetadata} layout of metadata.json."""
        if embodiment_tag not in EMBODIMENT_TAG_TO_ID:
            raise ValueError(f"unknown embodiment tag {embodiment_tag!r}: known tags are {sorted(EMBODIMENT_TAG_TO_ID)} (metadata.json has {sorted(metadata)}).")
        if embodiment_tag not in metadata:
            raise ValueError(f"metadata.json has no entry for embodiment tag {embodiment_tag!r}; it has {sorted(metadata)}. Pass one of those.")
        entry = metadata[embodiment_tag]
        modalities, statistics = entry["modalities"], entry["statistics"]

        def stats(kind: str) -> dict[str, dict[str, np.ndarray]]:
            keys = modalities.get(kind) or statistics[kind]  # modality order is the concatenation order
            return {key: {name: np.asarray(values, dtype=np.float32) for name, values in statistics[kind][key].items()} for key in keys}

        return cls(embodiment_tag, dict(modalities["video"]), stats("state"), stats("action"), action_horizon=action_horizon)

    @property
    def state_dims(self) -> dict[str, int]:
        return {key: len(s["min"]) for key, s in self.state.items()}

    @property
    def action_dims(self) -> dict[str, int]:
        return {key: len(s["min"]) for key, s in self.action.items()}

    def modality_config(self) -> dict[str, dict[str, list]]:
        """The four Isaac `ModalityConfig`s as plain dicts: {modality: {"delta_indices", "modality_keys"}}."""
        return {
            "video": {"delta_indices": [0], "modality_keys": [f"video.{k}" for k in self.video]},
            "state": {"delta_indices": [0], "modality_keys": [f"state.{k}" for k in self.state]},
            "action": {"delta_indices": list(range(self.action_horizon)), "modality_keys": [f"action.{k}" for k in self.action]},
            "language": {"delta_indices": [0], "modality_keys": [self.language_key]},
        }


def load_metadata(checkpoint_dir: Path, embodiment_tag: str = "new_embodiment") -> GR00TMetadata:
    """GR00TMetadata of a checkpoint directory (see `resolve_checkpoint`)."""
    config = json.loads((checkpoint_dir / "config.json").read_text())
    metadata = json.loads((checkpoint_dir / "experiment_cfg" / "metadata.json").read_text())
    parsed = GR00TMetadata.from_json(metadata, embodiment_tag, config.get("action_horizon", 16))
    try:
        parsed.joint_units = json.loads((checkpoint_dir / TRAINING_RECORD).read_text()).get("joint_units")
    except (OSError, ValueError, AttributeError):  # Isaac's checkpoints have no such record
        pass
    return parsed


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


NOISE_MODES = ("random", "zero")
"""Where each chunk's flow starts: a fresh Gaussian draw (Isaac's), or the Gaussian's mean (deterministic)."""


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
            dtype = json.loads((directory / "config.json").read_text()).get("torch_dtype", "bfloat16")
        dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
        metadata = load_metadata(directory, embodiment_tag)  # before the weights: fails fast on a bad tag
        if tokenizer is None or str(tokenizer) == DEFAULT_TOKENIZER:
            tokenizer = checkpoint_tokenizer(directory) or DEFAULT_TOKENIZER
        tokenizer = load_tokenizer(tokenizer)
        model = load_model(directory, dtype, device, attn_implementation)
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

    def get_action(self, observation: dict, generator: torch.Generator | None = None) -> dict[str, np.ndarray]:
        """Batched observation dict -> {action.<key>: float32 [B, 16, D_key]}; noise from `generator`
        if given, else from the policy's own (seeded by `seed`)."""
        states = [value for key, value in observation.items() if key.startswith("state.")]
        batched = not states or np.ndim(states[0]) == 3
        if not batched:  # Isaac's convention: state [T, D] means a single observation
            observation = {k: [v] if isinstance(v, str) else np.asarray(v)[None] for k, v in observation.items()}
        normalized = self.model.get_action(**self.prepare_inputs(observation), image_token_id=self.image_token_id,
                                           generator=generator or self.generator, noise_mode=self.noise).cpu().numpy()
        if self.clip_actions:
            normalized = np.clip(normalized, -1.0, 1.0)
        actions, start = {}, 0
        for key, stats in self.metadata.action.items():
            width = len(stats["min"])
            chunk = unnormalize_min_max(normalized[..., start:start + width], stats).astype(np.float32)
            actions[f"action.{key}"] = chunk if batched else chunk[0]
            start += width
        return actions


# ---------------------------------------------------------------------------------------------
# Inference server protocol (Isaac-GR00T's): ZeroMQ REQ/REP, msgpack, numpy arrays as .npy bytes.
# ---------------------------------------------------------------------------------------------


def _encode(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        buffer = io.BytesIO()
        np.save(buffer, obj, allow_pickle=False)
        return {"__ndarray_class__": True, "as_npy": buffer.getvalue()}
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"cannot send {type(obj).__name__} to a GR00T server")


def _decode(obj: dict) -> Any:
    if "__ndarray_class__" in obj:
        return np.load(io.BytesIO(obj["as_npy"]), allow_pickle=False)
    if "__ModalityConfig_class__" in obj:  # Isaac's pydantic ModalityConfig, as a plain dict here
        return json.loads(obj["as_json"])
    return obj


def pack(message: Any) -> bytes:
    return msgpack.packb(message, default=_encode)


def unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, object_hook=_decode)


class GR00TClient:
    """Client for the official Isaac-GR00T inference server (msgpack generation, Aug 2025+) and `GR00TServer`.

    Same interface as GR00TPolicy: get_action, modality_config, get_metadata (the last only on
    GR00TServer: Isaac servers do not expose statistics). Every call gives up after `timeout_s`
    with a TimeoutError instead of hanging; the socket is then recreated so the client stays usable."""

    def __init__(self, host: str = "localhost", port: int = 5555, timeout_s: float = 15.0, api_token: str | None = None):
        self.host, self.port, self.timeout_s, self.api_token = host, port, timeout_s, api_token
        self.socket = self._connect()

    def _connect(self) -> zmq.Socket:
        socket = zmq.Context.instance().socket(zmq.REQ)
        for option in (zmq.RCVTIMEO, zmq.SNDTIMEO):
            socket.setsockopt(option, int(self.timeout_s * 1000))
        socket.setsockopt(zmq.LINGER, 0)  # never block interpreter exit on unsent requests
        socket.connect(f"tcp://{self.host}:{self.port}")
        return socket

    def call(self, endpoint: str, data: dict | None = None) -> Any:
        """Send one request and wait for its reply; raises TimeoutError, ConnectionError or RuntimeError (server error)."""
        request = {"endpoint": endpoint} | ({} if data is None else {"data": data})
        if self.api_token:
            request["api_token"] = self.api_token
        address = f"{self.host}:{self.port}"
        payload = pack(request)
        try:
            self.socket.send(payload)
            reply = unpack(self.socket.recv())
        except zmq.Again:
            # A REQ socket that missed its reply cannot send again: replace it.
            self.socket.close()
            self.socket = self._connect()
            too_big = (f" Or the request was too big: it was {len(payload) / 1e6:.1f} MB, and a GR00TServer drops "
                       f"requests over twice its --max-message-mb (default {DEFAULT_MAX_MESSAGE_MB} MB) without a reply; "
                       f"send fewer envs per call." if len(payload) > DEFAULT_MAX_MESSAGE_MB * 1_000_000 else "")
            raise TimeoutError(
                f"no reply from the GR00T server at {address} to '{endpoint}' within {self.timeout_s:g} s. Is it running? "
                f"Start one with `python groot_n15.py serve CHECKPOINT --port {self.port}` or Isaac-GR00T's "
                f"`python scripts/inference_service.py --server --model_path CHECKPOINT --port {self.port}`.{too_big}"
            ) from None
        except zmq.ZMQError as err:
            self.socket.close()
            self.socket = self._connect()
            raise ConnectionError(f"cannot talk to the GR00T server at {address}: {err}") from err
        if isinstance(reply, dict) and "error" in reply:
            raise RuntimeError(f"GR00T server at {address} failed on '{endpoint}': {reply['error']}")
        return reply

    def ping(self) -> bool:
        """True if the server answers within the timeout."""
        try:
            self.call("ping")
            return True
        except (TimeoutError, ConnectionError):
            return False

    def get_action(self, observation: dict) -> dict[str, np.ndarray]:
        return self.call("get_action", observation)

    def modality_config(self) -> dict[str, dict[str, list]]:
        return self.call("get_modality_config")

    def get_metadata(self) -> GR00TMetadata:
        return GR00TMetadata(**self.call("get_metadata"))

    def kill(self) -> None:
        """Ask the server to stop after this reply. A GR00TServer on the network refuses unless it has an API token
        and this client sends it (RuntimeError with the reason)."""
        self.call("kill")

    def close(self) -> None:
        self.socket.close()


def is_loopback(host: str) -> bool:
    """True for addresses that only this machine can reach (127.0.0.0/8, ::1), as zmq reports a bound endpoint."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # not an IP address (an interface name): count it as reachable from the network
        return False


def check_finite(observation: Any) -> None:
    """Raise ValueError naming the first float array holding NaN or inf: the model would answer it with NaN actions."""
    if not isinstance(observation, dict):
        return  # the policy reports a malformed observation itself
    for key, value in observation.items():
        if isinstance(value, np.ndarray) and value.dtype.kind in "fc":
            bad = value.size - np.count_nonzero(np.isfinite(value))
            if bad:
                raise ValueError(f"observation '{key}' holds {bad} NaN or inf value(s); send finite numbers "
                                 f"(a NaN state usually means the simulation diverged: reset that env)")


class GR00TServer:
    """Serve a policy (GR00TPolicy, or anything with the same methods) with the Isaac protocol.

    Endpoints: ping, get_action, get_modality_config, kill, plus get_metadata (ours: statistics).
    `port=0` picks a free port (see `.port`). `run()` blocks until a client sends `kill`.

    Safe by default: it listens on 127.0.0.1 only (host="0.0.0.0" exposes it, best with `api_token`);
    `kill` needs the token, or, when there is none, a loopback-only server; requests over
    `max_message_bytes` and get_action requests with NaN or inf get an error reply, not a model call."""

    def __init__(self, policy, host: str = "127.0.0.1", port: int = 5555, api_token: str | None = None,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_MB * 1_000_000):
        if api_token is not None and not (isinstance(api_token, str) and api_token):
            raise ValueError("api_token must be a non-empty string, or None for no token")
        if isinstance(max_message_bytes, bool) or not isinstance(max_message_bytes, int) or max_message_bytes < 1:
            raise ValueError(f"max_message_bytes must be a positive integer, got {max_message_bytes!r}")
        self.policy, self.api_token, self.max_message_bytes = policy, api_token, max_message_bytes
        self.socket = zmq.Context.instance().socket(zmq.REP)
        self.socket.setsockopt(zmq.LINGER, 0)
        # Hard backstop to the soft cap in `handle`: zmq drops a peer whose message is over MAXMSGSIZE as
        # soon as it reads the size header, so nothing that large is buffered, but it sends no reply (the
        # client just times out). Twice the soft cap keeps the readable error for requests a little too big.
        self.socket.setsockopt(zmq.MAXMSGSIZE, min(2 * max_message_bytes, 2**63 - 1))
        self.socket.bind(f"tcp://{host}:{port or '*'}")
        self.endpoint = self.socket.getsockopt_string(zmq.LAST_ENDPOINT)  # e.g. tcp://127.0.0.1:5555
        bound_host, bound_port = self.endpoint.removeprefix("tcp://").rsplit(":", 1)
        self.port, self.loopback = int(bound_port), is_loopback(bound_host)
        self.running = False
        if not self.loopback and api_token is None:
            print(f"WARNING: the GR00T server on {self.endpoint} takes requests from the network without an API token: "
                  f"anyone who can reach this port can use the model (only `kill` is refused). Restart it with "
                  f"--api-token TOKEN (clients send the same token), or keep the default --host 127.0.0.1 and reach it "
                  f"through an SSH tunnel.", file=sys.stderr, flush=True)

    def handle(self, message: bytes) -> bytes:
        """Reply to one request; any failure, even an undecodable message, becomes {"error": ...} as in Isaac,
        so the REP socket always answers and the server keeps running."""
        if len(message) > self.max_message_bytes:  # checked before decoding: no time or memory spent on it
            return pack({"error": f"request of {len(message):,} bytes is over this server's limit of "
                                  f"{self.max_message_bytes:,} bytes ({self.max_message_bytes / 1e6:g} MB); send fewer envs "
                                  f"per call, or restart the server with a larger --max-message-mb"})
        try:
            return pack(self.dispatch(unpack(message)))
        except Exception as err:
            return pack({"error": f"{type(err).__name__}: {err}"})

    def token_ok(self, token: Any) -> bool:
        # compare_digest takes the same time wherever the strings differ: the token cannot be guessed by timing.
        return isinstance(token, str) and hmac.compare_digest(token.encode(), self.api_token.encode())

    def dispatch(self, request: dict) -> Any:
        if self.api_token is not None and not self.token_ok(request.get("api_token")):
            return {"error": "Unauthorized: Invalid API token"}
        endpoint = request.get("endpoint", "get_action")
        if endpoint == "ping":
            return {"status": "ok", "message": "Server is running"}
        if endpoint == "kill":
            if self.api_token is None and not self.loopback:  # with a token, reaching here means it was valid
                return {"error": f"kill refused: the server on {self.endpoint} has no API token, so any host on the "
                                 f"network could stop it. Stop it on its own machine (Ctrl-C), or restart it with "
                                 f"--api-token TOKEN and send kill with that token."}
            self.running = False
            return {"status": "ok", "message": "Server is stopping"}
        if endpoint == "get_action":
            observation = request.get("data", {})
            check_finite(observation)
            return self.policy.get_action(observation)
        if endpoint == "get_modality_config":
            return {name: {"__ModalityConfig_class__": True, "as_json": json.dumps(config)}
                    for name, config in self.policy.modality_config().items()}
        if endpoint == "get_metadata":
            return asdict(self.policy.get_metadata())
        raise ValueError(f"Unknown endpoint: {endpoint}")

    def run(self) -> None:
        self.running = True
        print(f"GR00T server listening on {self.endpoint} (requests up to {self.max_message_bytes / 1e6:g} MB, "
              f"API token {'required' if self.api_token else 'not set'})", flush=True)
        while self.running:
            self.socket.send(self.handle(self.socket.recv()))
        self.socket.close()


# ---------------------------------------------------------------------------------------------
# Command line.
# ---------------------------------------------------------------------------------------------


def print_info(checkpoint_dir: Path, metadata: GR00TMetadata) -> None:
    """Modality keys, dims and statistics of a checkpoint: what a sim integration needs to map cameras and joints."""
    index = checkpoint_dir / "model.safetensors.index.json"
    future = FUTURE_TOKENS_KEY in json.loads(index.read_text())["weight_map"] if index.is_file() else "unknown (no index)"
    print(f"checkpoint: {checkpoint_dir}\nembodiment: {metadata.embodiment_tag} (id {EMBODIMENT_TAG_TO_ID[metadata.embodiment_tag]})"
          f"\nfuture_tokens: {future}\nlanguage: {metadata.language_key}")
    for camera, info in metadata.video.items():
        print(f"video.{camera}: {info}")
    for kind, stats in (("state", metadata.state), ("action", metadata.action)):
        for key, s in stats.items():
            print(f"{kind}.{key} [{len(s['min'])}]: min {np.round(s['min'], 3).tolist()} max {np.round(s['max'], 3).tolist()}")


def port_number(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a port number") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {port} is outside 0..65535 (0 picks a free port)")
    return port


def megabytes(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number of MB") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text} MB: the limit must be a positive, finite number of MB")
    return value


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="GR00T N1.5 inference: inspect a checkpoint, convert its weights' dtype, or serve it over ZeroMQ.")
    commands = parser.add_subparsers(dest="command", required=True)
    info = commands.add_parser("info", help="print modality keys and statistics (reads no weights)")
    convert = commands.add_parser("convert", help="copy a checkpoint directory with its weights stored in another dtype")
    convert.add_argument("checkpoint", help="checkpoint directory")
    convert.add_argument("destination", help="new (or empty) directory to write")
    convert.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"],
                         help="dtype of the stored weights (default bfloat16: half of float32's size); config.json is kept")
    serve = commands.add_parser("serve", help="serve the checkpoint with the Isaac-GR00T ZeroMQ protocol")
    for sub in (info, serve):
        sub.add_argument("checkpoint", help="checkpoint directory or Hugging Face hub id")
        sub.add_argument("--revision", default=None, help="hub branch/tag/commit")
        sub.add_argument("--embodiment-tag", default="new_embodiment")
    serve.add_argument("--groot-tokenizer", default=None,
                       help=f"tokenizer directory or hub id (default: the checkpoint's own tokenizer/ if it has one, else {DEFAULT_TOKENIZER})")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default 127.0.0.1: this machine only); --host 0.0.0.0 accepts clients "
                            "from the network, and should come with --api-token")
    serve.add_argument("--port", type=port_number, default=5555, help="TCP port, 0..65535 (0 picks a free one; default 5555)")
    serve.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    serve.add_argument("--noise", default="random", choices=NOISE_MODES,
                       help="where each chunk's flow starts: a Gaussian draw (random, Isaac's) or its mean (zero: the same "
                            "observation always gives the same chunk)")
    serve.add_argument("--dtype", default=None, choices=["bfloat16", "float32"], help="default: the checkpoint's config.json torch_dtype")
    serve.add_argument("--api-token", default=None,
                       help="token every request must carry (GR00TClient(api_token=...); the training and evaluation "
                            "scripts send the GROOT_API_TOKEN environment variable); it travels unencrypted, so on an "
                            "untrusted network prefer an SSH tunnel to a 127.0.0.1 server")
    serve.add_argument("--max-message-mb", type=megabytes, default=DEFAULT_MAX_MESSAGE_MB,
                       help=f"largest request in MB of 10^6 bytes (default {DEFAULT_MAX_MESSAGE_MB}); larger ones get an "
                            f"error reply, and over twice the limit the connection is dropped without one. 64 envs x 2 "
                            f"cameras x 224x224x3 uint8 frames are 19.3 MB: raise it for more envs or larger frames")
    args = parser.parse_args(argv)

    if args.command == "convert":
        print(f"wrote {convert_checkpoint(args.checkpoint, args.destination, getattr(torch, args.dtype))}")
    elif args.command == "info":
        directory = resolve_checkpoint(args.checkpoint, args.revision, weights=False)
        print_info(directory, load_metadata(directory, args.embodiment_tag))
    else:
        # Bind before the slow model load: a taken port or a bad --host fails at once, and the warning comes first.
        server = GR00TServer(None, args.host, args.port, args.api_token, math.ceil(args.max_message_mb * 1_000_000))
        server.policy = GR00TPolicy.from_pretrained(args.checkpoint, args.embodiment_tag, args.groot_tokenizer, args.dtype,
                                                    args.device, args.revision, noise=args.noise)
        server.run()


if __name__ == "__main__":
    main()
