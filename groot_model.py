"""GR00T N1.5, the model: an Eagle 2.5 VLM reads the cameras and the instruction, a flow-matching
DiT turns the robot state and Gaussian noise into a chunk of actions. Plain torch, plus SigLIP and
Qwen3 from `transformers`; nothing else here (checkpoint files: groot_checkpoint.py; observations
to model inputs and actions: groot_policy.py; the inference server: groot_server.py).

NVIDIA's GR00T N1.5 is a vision-language-action model in two parts, each an nn.Module below:

    images (B*V, 3, 224, 224) --SigLIP (27 layers, 1152 wide)--> 256 patch tokens per image
      --mlp1 (one Linear 1152 -> 2048)--> spliced into the prompt's <IMG_CONTEXT> placeholders
      --Qwen3-1.7B cut to its first 12 layers + final norm--> backbone features (B, L, 2048)
                                                                      [EagleVLM]
    backbone features --LayerNorm + 4 self-attention blocks--> VL tokens (B, L, 2048)
    state (B, 1, 64) --per-embodiment MLP--> 1 token; + 32 learned "future" tokens
    noisy actions (B, 16, 32) + flow time --per-embodiment encoder--> 16 tokens
      --DiT (16 blocks, 1536 wide; even blocks cross-attend to the VL tokens, all adaLN-conditioned
        on the time)--> per-embodiment decoder --> velocity; 4 Euler steps from noise (t = 0)
        to a chunk of 16 normalized actions (t = 1)           [FlowMatchingActionHead, DiT]

`GR00TN15` holds both under Isaac's parameter names (`backbone.eagle_model.*`, `action_head.*`), so
an Isaac-GR00T checkpoint loads with `load_state_dict(strict=True)`: 2.41 B parameters at full size.
`get_action` samples a chunk (inference); `forward` is the flow-matching training loss.

Where the numbers come from. The VLM's sizes (EAGLE_VISION_CONFIG, EAGLE_TEXT_CONFIG) are not in
GR00T checkpoints: Isaac always builds the VLM from the Eagle config it vendors
(gr00t/model/backbone/eagle2_hg_model/), so they are carried here; only `select_layer` (12) comes
from the checkpoint. Everything else is read from the checkpoint's config.json (`action_head_cfg`:
widths, depths, horizon 16, action dim 32, state dim 64, 4 inference steps, 1000 time buckets).
N15_CONFIG is that file for nvidia/GR00T-N1.5-3B, which fine-tunes copy. Embodiments index slices
of the category-specific layers (EMBODIMENT_TAG_TO_ID: fine-tunes on a new robot use 31). Layer
names, key layouts and the order of sin/cos, scale/shift follow Isaac's (and diffusers') code; the
docstrings say where a detail silently breaks real checkpoints when it is wrong.
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F
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
NOISE_MODES = ("random", "zero")
"""Where each chunk's flow starts: a fresh Gaussian draw (Isaac's), or the Gaussian's mean (deterministic)."""


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
                noise_mode: str = "random", initial_noise: torch.Tensor | None = None) -> torch.Tensor:
        """(B, L, D) VLM features, (B, 1, max_state_dim) normalized state -> (B, horizon, action_dim) normalized actions.
        The flow starts from a Gaussian draw (`noise_mode="random"`, Isaac's), or from its mean (`"zero"`), or from
        `initial_noise` (B, horizon, action_dim) when given (a policy that steers the flow chooses it)."""
        batch, device = state.shape[0], vl_features.device
        vl_tokens = self.vl_self_attention(self.vlln(vl_features))
        prefix = self.prefix_tokens(state, embodiment_id)
        shape = (batch, self.action_horizon, self.action_dim)
        if initial_noise is not None:
            if tuple(initial_noise.shape) != shape:
                raise ValueError(f"initial_noise must be (batch, horizon, action_dim) = {shape}, got {tuple(initial_noise.shape)}")
            actions = initial_noise.to(device=device, dtype=vl_tokens.dtype)
        elif noise_mode == "zero":
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
                   generator: torch.Generator | None = None, noise_mode: str = "random",
                   initial_noise: torch.Tensor | None = None) -> torch.Tensor:
        """Model inputs (see GR00TPolicy.prepare_inputs) -> normalized action chunk (B, action_horizon, action_dim), float32.
        `initial_noise` (B, action_horizon, action_dim), when given, is where the flow starts (`noise_mode` is then unused)."""
        dtype = self.action_head.vlln.weight.dtype
        # Isaac runs bf16 weights under bf16 autocast, so norms and softmax compute in fp32; mirror that.
        with torch.autocast(pixel_values.device.type, dtype=dtype, enabled=dtype != torch.float32):
            features = self.backbone["eagle_model"](input_ids, attention_mask, pixel_values.to(dtype), image_token_id)
            return self.action_head(features, state.to(dtype), embodiment_id, generator, noise_mode, initial_noise).float()


# ---------------------------------------------------------------------------------------------
# Building the model without memory for its weights.
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


def build_model(config: dict, future_tokens: bool = True, attn_implementation: str = "sdpa") -> GR00TN15:
    """The architecture with parameters on the meta device, ready for `load_state_dict(assign=True)`. `config`
    comes from a file, so it is checked first (check_config_limits), and the model refused above MAX_PARAMETERS
    before any memory is given to its weights."""
    check_config_limits(config)
    with parameters_on_meta_device():
        model = GR00TN15(config, future_tokens, attn_implementation)
    count = sum(p.numel() for p in model.parameters())
    if count > MAX_PARAMETERS:
        raise ValueError(f"this configuration has {count / 1e9:.1f} B parameters, over the limit of {MAX_PARAMETERS / 1e9:g} B "
                         f"(GR00T N1.5 has 2.41 B)")
    return model


# ---------------------------------------------------------------------------------------------
# Limits on a config.json: a file must not choose a huge allocation or an endless loop.
# ---------------------------------------------------------------------------------------------

# Each cap is far above nvidia/GR00T-N1.5-3B's value (N15_CONFIG, EAGLE_*_CONFIG), given in its comment.
MAX_LAYERS = 256  # in any one stack; the real deepest is SigLIP's 27
MAX_WIDTH = 65_536  # widths, head counts and sizes, state and action dims; the real widest is Qwen3's 6144-wide MLP
MAX_TOKENS = 1_048_576  # vocabulary, position tables, time buckets; the real largest is the 151,680-token vocabulary
MAX_IMAGE_SIZE = 2048  # pixels a side at which the VLM reads each camera; the real model reads 224
MAX_TOKENS_PER_IMAGE = 4096  # (image_size / patch_size)^2, prompt tokens per camera; the real model has 256
MAX_ACTION_HORIZON = 1024  # actions per chunk; the real model predicts 16
MAX_INFERENCE_STEPS = 1000  # Euler steps per chunk, each a full DiT pass; the real model takes 4
MAX_PARAMETERS = 8_000_000_000  # the real model has 2.41 B; 8 B float32 weights already fill 32 GB
COMPUTE_DTYPES = ("bfloat16", "float16", "float32")  # what config.json's torch_dtype may name
REQUIRED_SIZES = {  # the sizes GR00TN15 reads from config.json without a default -> their caps
    "action_head_cfg.action_dim": MAX_WIDTH, "action_head_cfg.action_horizon": MAX_ACTION_HORIZON,
    "action_head_cfg.backbone_embedding_dim": MAX_WIDTH, "action_head_cfg.hidden_size": MAX_WIDTH,
    "action_head_cfg.input_embedding_dim": MAX_WIDTH, "action_head_cfg.max_state_dim": MAX_WIDTH,
    "action_head_cfg.diffusion_model_cfg.num_layers": MAX_LAYERS,
    "action_head_cfg.diffusion_model_cfg.num_attention_heads": MAX_WIDTH,
    "action_head_cfg.diffusion_model_cfg.attention_head_dim": MAX_WIDTH,
    "action_head_cfg.diffusion_model_cfg.cross_attention_dim": MAX_WIDTH,
    "action_head_cfg.diffusion_model_cfg.output_dim": MAX_WIDTH,
    "action_head_cfg.vl_self_attention_cfg.num_layers": MAX_LAYERS,
    "action_head_cfg.vl_self_attention_cfg.num_attention_heads": MAX_WIDTH,
    "action_head_cfg.vl_self_attention_cfg.attention_head_dim": MAX_WIDTH,
}
OPTIONAL_SIZES = {  # those with a default (the Eagle VLM's in EAGLE_*_CONFIG) -> their caps; no other VLM field may be set
    "action_horizon": MAX_ACTION_HORIZON, "backbone_cfg.select_layer": MAX_LAYERS,
    "action_head_cfg.max_num_embodiments": MAX_WIDTH, "action_head_cfg.max_seq_len": MAX_TOKENS,
    "action_head_cfg.num_inference_timesteps": MAX_INFERENCE_STEPS, "action_head_cfg.num_target_vision_tokens": MAX_TOKENS,
    "action_head_cfg.num_timestep_buckets": MAX_TOKENS,
    **{f"backbone_cfg.vision_config.{name}": cap for name, cap in dict(
        hidden_size=MAX_WIDTH, intermediate_size=MAX_WIDTH, num_hidden_layers=MAX_LAYERS, num_attention_heads=MAX_WIDTH,
        image_size=MAX_IMAGE_SIZE, patch_size=MAX_IMAGE_SIZE).items()},
    **{f"backbone_cfg.text_config.{name}": cap for name, cap in dict(
        vocab_size=MAX_TOKENS, hidden_size=MAX_WIDTH, intermediate_size=MAX_WIDTH, num_hidden_layers=MAX_LAYERS,
        num_attention_heads=MAX_WIDTH, num_key_value_heads=MAX_WIDTH, head_dim=MAX_WIDTH, max_position_embeddings=MAX_TOKENS).items()},
}


def check_config_limits(config: dict) -> None:
    """Raise ValueError, naming the field, unless every size GR00TN15 reads from `config` (a config.json) is a
    whole number from 1 to its cap (REQUIRED_SIZES, OPTIONAL_SIZES), an image gives at most MAX_TOKENS_PER_IMAGE
    tokens, no other field of the Eagle VLM is overridden and torch_dtype is one of COMPUTE_DTYPES. Nothing is built."""
    missing = object()

    def field(path: str):
        value = config
        for name in path.split("."):
            if not isinstance(value, dict) or name not in value:
                return missing
            value = value[name]
        return value

    if not isinstance(config, dict):
        raise ValueError(f"the configuration must be a JSON object, got {type(config).__name__}")
    for path, cap in (REQUIRED_SIZES | OPTIONAL_SIZES).items():
        value = field(path)
        if value is missing and path in REQUIRED_SIZES:
            raise ValueError(f"the configuration lacks {path}; is it a GR00T N1.5 config.json?")
        if value is not missing and (isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= cap):
            raise ValueError(f"{path} must be a whole number from 1 to {cap:,}, got {value!r}")
    for part in ("vision_config", "text_config"):
        overrides = field(f"backbone_cfg.{part}")
        allowed = [path.rsplit(".", 1)[1] for path in OPTIONAL_SIZES if path.startswith(f"backbone_cfg.{part}.")]
        if overrides is not missing and (not isinstance(overrides, dict) or set(overrides) - set(allowed)):
            raise ValueError(f"backbone_cfg.{part} may set only the sizes {allowed}, got {overrides!r}")
    vision_overrides = field("backbone_cfg.vision_config")
    vision = EAGLE_VISION_CONFIG | ({} if vision_overrides is missing else vision_overrides)
    tokens = (vision["image_size"] // vision["patch_size"]) ** 2
    if not 1 <= tokens <= MAX_TOKENS_PER_IMAGE:
        raise ValueError(f"backbone_cfg.vision_config gives {tokens:,} tokens per image ((image_size // patch_size)^2); "
                         f"it must give 1 to {MAX_TOKENS_PER_IMAGE:,}")
    if config.get("torch_dtype", COMPUTE_DTYPES[0]) not in COMPUTE_DTYPES:
        raise ValueError(f"torch_dtype must be one of {COMPUTE_DTYPES}, got {config['torch_dtype']!r}")
