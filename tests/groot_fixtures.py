"""Builders for tiny random GR00T N1.5 checkpoints and tokenizers in the real Isaac on-disk format.

Shared by the GR00T tests: no network, no GPU. `write_checkpoint` writes config.json, safetensors
shards with their index, and experiment_cfg/metadata.json (SO-100 dual-camera keys by default);
`write_tokenizer` writes a byte-level tokenizer in the Eagle/Qwen2 file layout. Test modules
import the fixtures: `tokenizer_dir` and `checkpoint_dir` (built once per module), and the
autouse `one_torch_thread`, which runs the importing module on one torch thread; `free_port`
finds a port that nothing listens on, for servers and for clients that must find no server.
"""

import functools
import json
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from groot_model import GR00TN15

# config.json of nvidia/GR00T-N1.5-3B: the fields the model reads.
REAL_CONFIG = {
    "model_type": "gr00t_n1_5", "action_horizon": 16, "action_dim": 32,
    "backbone_cfg": {"select_layer": 12, "project_to_dim": None, "tune_llm": False, "tune_visual": True},
    "action_head_cfg": {
        "action_dim": 32, "action_horizon": 16, "add_pos_embed": True, "backbone_embedding_dim": 2048,
        "hidden_size": 1024, "input_embedding_dim": 1536, "max_action_dim": 32, "max_state_dim": 64,
        "num_inference_timesteps": 4, "num_target_vision_tokens": 32, "num_timestep_buckets": 1000, "use_vlln": True,
        "diffusion_model_cfg": {
            "attention_head_dim": 48, "cross_attention_dim": 2048, "dropout": 0.2, "final_dropout": True,
            "interleave_self_attention": True, "norm_type": "ada_norm", "num_attention_heads": 32,
            "num_layers": 16, "output_dim": 1024, "positional_embeddings": None,
        },
        "vl_self_attention_cfg": {
            "attention_head_dim": 64, "dropout": 0.2, "final_dropout": True, "num_attention_heads": 32,
            "num_layers": 4, "positional_embeddings": None,
        },
    },
}

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<IMG_CONTEXT>", "<img>", "</img>"]
BYTE_VOCAB_SIZE = 256

# Same structure, tiny sizes: SigLIP at 224 px with 56 px patches gives 16 tokens per image.
TINY_CONFIG = json.loads(json.dumps(REAL_CONFIG))
TINY_CONFIG["backbone_cfg"] |= {
    "select_layer": 2,
    "vision_config": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "patch_size": 56},
    "text_config": {"vocab_size": BYTE_VOCAB_SIZE + len(SPECIAL_TOKENS), "hidden_size": 64, "intermediate_size": 128,
                    "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16},
}
TINY_CONFIG["action_head_cfg"] |= {"backbone_embedding_dim": 64, "hidden_size": 32, "input_embedding_dim": 48}
TINY_CONFIG["action_head_cfg"]["diffusion_model_cfg"] |= {"attention_head_dim": 24, "num_attention_heads": 2, "num_layers": 4, "cross_attention_dim": 64, "output_dim": 32}
TINY_CONFIG["action_head_cfg"]["vl_self_attention_cfg"] |= {"attention_head_dim": 32, "num_attention_heads": 2, "num_layers": 2}


def stats(low, high):
    low, high = np.asarray(low, float), np.asarray(high, float)
    return {"min": low.tolist(), "max": high.tolist(), "mean": ((low + high) / 2).tolist(), "std": ((high - low) / 4).tolist(),
            "q01": low.tolist(), "q99": high.tolist()}


ARM_STATS = stats([-1.9, -1.7, -1.6, -1.6, -2.7], [1.9, 1.7, 1.6, 1.6, 2.7])
GRIPPER_STATS = stats([0.0], [0.0])  # a constant dimension: normalizes to 0, unnormalizes to min
METADATA = {"new_embodiment": {
    "statistics": {"state": {"single_arm": ARM_STATS, "gripper": GRIPPER_STATS},
                   "action": {"single_arm": ARM_STATS, "gripper": stats([-0.2], [1.7])}},
    "modalities": {
        "video": {"front": {"resolution": [96, 72], "channels": 3, "fps": 30.0}, "wrist": {"resolution": [96, 72], "channels": 3, "fps": 30.0}},
        "state": {"single_arm": {"absolute": True, "rotation_type": None, "shape": [5], "continuous": True},
                  "gripper": {"absolute": True, "rotation_type": None, "shape": [1], "continuous": True}},
        "action": {"single_arm": {"absolute": True, "rotation_type": None, "shape": [5], "continuous": True},
                   "gripper": {"absolute": True, "rotation_type": None, "shape": [1], "continuous": True}},
    },
    "embodiment_tag": "new_embodiment",
}}


def write_tokenizer(directory: Path) -> Path:
    """A byte-level BPE tokenizer in the Eagle/Qwen2 file layout (vocab.json + merges.txt, no tokenizer.json)."""
    from tokenizers.pre_tokenizers import ByteLevel

    directory.mkdir(parents=True, exist_ok=True)
    vocab = {symbol: i for i, symbol in enumerate(sorted(ByteLevel.alphabet()))}
    (directory / "vocab.json").write_text(json.dumps(vocab))
    (directory / "merges.txt").write_text("#version: 0.2\n")
    (directory / "added_tokens.json").write_text(json.dumps({t: BYTE_VOCAB_SIZE + i for i, t in enumerate(SPECIAL_TOKENS)}))
    (directory / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "Qwen2Tokenizer", "pad_token": "<|endoftext|>", "eos_token": "<|im_end|>",
        "additional_special_tokens": SPECIAL_TOKENS[1:], "model_max_length": 131072,
    }))
    return directory


def write_checkpoint(directory: Path, drop_keys=(), dtype=torch.float32, shards: int = 2, metadata: dict = METADATA) -> Path:
    """Random tiny GR00T N1.5 in the Isaac format: config.json, safetensors (+ index), experiment_cfg/metadata.json."""
    torch.manual_seed(0)
    state = {k: v.detach().clone().to(dtype) for k, v in GR00TN15(TINY_CONFIG).state_dict().items() if k not in drop_keys}
    (directory / "experiment_cfg").mkdir(parents=True)
    (directory / "config.json").write_text(json.dumps(TINY_CONFIG))
    (directory / "experiment_cfg" / "metadata.json").write_text(json.dumps(metadata))
    if shards == 1:
        save_file(state, directory / "model.safetensors")
        return directory
    keys = list(state)
    weight_map = {}
    for shard, part in enumerate(np.array_split(np.arange(len(keys)), shards), start=1):
        name = f"model-{shard:05d}-of-{shards:05d}.safetensors"
        save_file({keys[i]: state[keys[i]] for i in part}, directory / name)
        weight_map |= {keys[i]: name for i in part}
    total = sum(t.numel() * t.element_size() for t in state.values())
    (directory / "model.safetensors.index.json").write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}))
    return directory


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Tiny models run fastest on one thread, and OpenMP threads spin badly when other processes
    share the 2 CI cores (10-40x slower calls were measured)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    return write_tokenizer(tmp_path_factory.mktemp("tokenizer"))


@pytest.fixture(scope="module")
def checkpoint_dir(tmp_path_factory):
    return write_checkpoint(tmp_path_factory.mktemp("checkpoint"))


@pytest.fixture(scope="module")
def short_episodes():
    """40-step episodes in the scripts and their evaluation: the wiring is the same, the runtime a tenth, and
    they end mid-chunk, so a reset env asks for its chunk off the beat."""
    import eval_policy
    import so101_env

    short = functools.partial(so101_env.SO101PaperSquareEnv, max_episode_steps=40)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(so101_env, "SO101PaperSquareEnv", short)
        patch.setattr(eval_policy, "SO101PaperSquareEnv", short)
        yield
