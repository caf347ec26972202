"""GR00T N1.5 checkpoints on disk: find, read, write and convert them, and their tokenizer and metadata.

The format is Isaac-GR00T's: a directory (or Hugging Face hub id) holding config.json, the weights
as model.safetensors or shards named by model.safetensors.index.json, and experiment_cfg/metadata.json
(the embodiment's camera, state and action keys with their normalization statistics). Checkpoints
this project trains may also carry their tokenizer in tokenizer/ and a training record.

    directory = resolve_checkpoint("path/or/hub-id")     # downloads a hub id's files once
    model = load_model(directory, torch.float32)          # groot_model.GR00TN15, weights loaded strictly
    metadata = load_metadata(directory)                    # GR00TMetadata: keys and statistics
    save_checkpoint(model, "new_dir", metadata_json, tokenizer)

    python groot_tools.py info CHECKPOINT                              # modality keys and statistics
    python groot_tools.py convert CHECKPOINT SMALLER --dtype bfloat16  # weights stored in half the bytes
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch

from groot_model import EMBODIMENT_TAG_TO_ID, MAX_ACTION_HORIZON, MAX_WIDTH, GR00TN15, build_model, check_config_limits

DEFAULT_TOKENIZER = "lerobot/eagle2hg-processor-groot-n1p5"  # Eagle 2.5 tokenizer files
DEFAULT_LANGUAGE_KEY = "annotation.human.task_description"
TRAINING_RECORD = "experiment_cfg/finetune_groot.json"
"""how finetune_groot.py made a checkpoint (its joint units among it); Isaac's loader ignores the file"""
IMAGE_CONTEXT_TOKEN = "<IMG_CONTEXT>"
PROMPT_SPECIAL_TOKENS = ("<|im_start|>", "<|im_end|>", "<img>", "</img>", IMAGE_CONTEXT_TOKEN)
FUTURE_TOKENS_KEY = "action_head.future_tokens.weight"
EMBED_TOKENS_KEY = "backbone.eagle_model.language_model.model.embed_tokens.weight"
LM_HEAD_KEY = "backbone.eagle_model.language_model.lm_head.weight"
TOKENIZER_SUBDIR = "tokenizer"  # where a checkpoint carries its own tokenizer (small configurations do; Isaac's do not)
BYTE_TOKENIZER_SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", IMAGE_CONTEXT_TOKEN, "<img>", "</img>"]
BYTE_TOKENIZER_VOCAB_SIZE = 256 + len(BYTE_TOKENIZER_SPECIAL_TOKENS)  # see write_byte_tokenizer
MAX_JSON_BYTES = 16_000_000  # config, metadata and index files; the real N1.5's largest, its shard index, is 0.1 MB
MAX_CAMERA_SIDE = 4096  # pixels a side of metadata.json's camera resolutions (frames are resized to them); 4K fits
CHECKPOINT_INSTEAD = ("pass a local checkpoint directory (the scripts' --groot.model <directory>; the committed "
                      "checkpoints/groot_n15_small_so101_sim works offline)")
"""what resolve_checkpoint's error says to do when a checkpoint can be neither found nor downloaded"""


# ---------------------------------------------------------------------------------------------
# Finding, reading and writing checkpoint directories.
# ---------------------------------------------------------------------------------------------


def resolve_source(source: str | Path, what: str, allow_patterns: list[str], revision: str | None = None,
                   instead: str = "pass a local directory") -> Path:
    """A local directory as is; otherwise treat `source` as a Hugging Face hub id and download the matching files.
    When it is neither, the FileNotFoundError ends with `instead`: what to pass."""
    path = Path(source).expanduser()
    if path.is_dir():
        return path
    looks_like_hub_id = str(source).count("/") == 1 and not str(source).startswith((".", "/", "~"))
    if not looks_like_hub_id:
        raise FileNotFoundError(f"{what} {str(source)!r} is not a directory (nor a Hugging Face hub id like 'owner/name'); {instead}.")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(str(source), revision=revision, allow_patterns=allow_patterns))
    except Exception as err:  # the hub client raises many error types (offline, 404, auth); all mean the same here
        raise FileNotFoundError(
            f"{what} {str(source)!r} is not a local directory and could not be downloaded from the Hugging Face Hub "
            f"({type(err).__name__}: {err}). Check the hub id, revision and network, or {instead}."
        ) from err


def resolve_checkpoint(checkpoint: str | Path, revision: str | None = None, weights: bool = True) -> Path:
    """Checkpoint directory holding config.json and experiment_cfg/metadata.json (and the weights if `weights`)."""
    patterns = ["config.json", "model.safetensors.index.json", "experiment_cfg/*", f"{TOKENIZER_SUBDIR}/*"] + (["*.safetensors"] if weights else [])
    directory = resolve_source(checkpoint, "GR00T checkpoint", patterns, revision, instead=CHECKPOINT_INSTEAD)
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


def read_json(path: Path) -> dict:
    """A JSON object from a checkpoint's file, refused (ValueError naming the file) when larger than MAX_JSON_BYTES
    or not a JSON object."""
    size = path.stat().st_size
    if size > MAX_JSON_BYTES:
        raise ValueError(f"{path} is {size:,} bytes, over the limit of {MAX_JSON_BYTES:,} for a checkpoint's JSON file")
    try:
        content = json.loads(path.read_bytes())
    except ValueError as err:  # JSONDecodeError and UnicodeDecodeError
        raise ValueError(f"{path} is not valid JSON ({err})") from None
    if not isinstance(content, dict):
        raise ValueError(f"{path} must hold a JSON object, not {type(content).__name__}")
    return content


def read_config(checkpoint_dir: Path) -> dict:
    """config.json, checked against groot_model's limits (check_config_limits) before anything is built or run."""
    path = checkpoint_dir / "config.json"
    config = read_json(path)
    try:
        check_config_limits(config)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None
    return config


def safetensors_files(directory: Path) -> list[Path]:
    """The weight files: the shards named by model.safetensors.index.json (plain file names in `directory`,
    never a path that leads elsewhere), else model.safetensors."""
    index = directory / "model.safetensors.index.json"
    if index.is_file():
        weight_map = read_json(index).get("weight_map")
        if not isinstance(weight_map, dict) or not all(isinstance(name, str) for name in weight_map.values()):
            raise ValueError(f"{index} must map each weight name to a file name in its 'weight_map'")
        shards = sorted(set(weight_map.values()))
        elsewhere = [name for name in shards if Path(name).name != name or name in ("", ".", "..")]
        if elsewhere:
            raise ValueError(f"{index} names shards outside {directory}: {elsewhere[:3]}; shards must be files in the checkpoint directory")
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

    from safetensors.torch import save_file

    source, destination = Path(source), Path(destination)
    inside = source.resolve()
    for path in source.rglob("*"):  # copytree would copy what a link points to, wherever that is
        if path.is_symlink() and not path.resolve().is_relative_to(inside):
            raise ValueError(f"{path} is a symbolic link to {path.resolve()}, outside the checkpoint {source}; convert copies "
                             f"only what is inside it: replace the link by a copy of what it points to, if that belongs there")
    weights = safetensors_files(source)
    if destination.exists() and (not destination.is_dir() or any(destination.iterdir())):
        raise FileExistsError(f"{destination} exists and is not an empty directory; convert_checkpoint writes a new one")
    shutil.copytree(source, destination, dirs_exist_ok=True,
                    ignore=lambda folder, names: [name for name in names if Path(folder, name) in weights])
    total = 0
    for file in weights:
        with open_safetensors(file) as handle:
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


def open_safetensors(file: Path, device: str | torch.device = "cpu"):
    """safetensors' safe_open (it reads the header; tensors are read when asked for), with a ValueError naming the
    file when it is no safetensors file (truncated, garbage, a header over safetensors' own 100 MB limit)."""
    from safetensors import SafetensorError, safe_open

    try:
        return safe_open(str(file), framework="pt", device=str(device))
    except SafetensorError as err:
        raise ValueError(f"{file} is not a readable safetensors file ({err}); download or copy it again") from None


def tie_embeddings(state: dict) -> dict:
    """lm_head is tied to embed_tokens: checkpoints store either or both, and whichever is present fills both names."""
    embedding = state.get(EMBED_TOKENS_KEY, state.get(LM_HEAD_KEY))
    return state if embedding is None else state | {EMBED_TOKENS_KEY: embedding, LM_HEAD_KEY: embedding}


def stored_shapes(files: list[Path]) -> dict[str, tuple[int, ...]]:
    """The shape of every tensor the files hold, read from their headers alone."""
    shapes = {}
    for file in files:
        with open_safetensors(file) as handle:
            shapes |= {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}
    return tie_embeddings(shapes)


def load_state_dict(files: list[Path], dtype: torch.dtype, device: str | torch.device) -> dict[str, torch.Tensor]:
    """Read all tensors, cast to `dtype`, lm_head and embed_tokens as one shared tensor (`tie_embeddings`)."""
    state = {}
    for file in files:
        with open_safetensors(file, device) as handle:
            for key in handle.keys():
                if key == LM_HEAD_KEY and EMBED_TOKENS_KEY in state:
                    continue
                state[key] = handle.get_tensor(key).to(dtype)
    return tie_embeddings(state)


def load_model(checkpoint_dir: Path, dtype: torch.dtype = torch.bfloat16, device: str | torch.device = "cpu",
               attn_implementation: str = "sdpa") -> GR00TN15:
    """Build GR00T N1.5 from an Isaac-format checkpoint directory and load its weights strictly. What the files
    ask for is checked before it is allocated: config.json's sizes and the parameter count (build_model), then
    the stored names and shapes against the model's; the weights, once read, must be finite."""
    config = read_config(checkpoint_dir)
    files = safetensors_files(checkpoint_dir)
    shapes = stored_shapes(files)
    try:
        model = build_model(config, future_tokens=FUTURE_TOKENS_KEY in shapes, attn_implementation=attn_implementation)
    except ValueError as err:  # the parameter count
        raise ValueError(f"{checkpoint_dir / 'config.json'}: {err}") from None
    expected = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    missing, unexpected = sorted(expected.keys() - shapes.keys()), sorted(shapes.keys() - expected.keys())
    if missing or unexpected:
        raise ValueError(
            f"{checkpoint_dir} does not match the GR00T N1.5 architecture: missing {missing[:5]} "
            f"({len(missing)} in all), unexpected {unexpected[:5]} ({len(unexpected)} in all). "
            "This loader reads Isaac-GR00T checkpoints; LeRobot-format ones prefix every key with `_groot_model.`."
        )
    reshaped = [key for key in expected if shapes[key] != expected[key]]
    if reshaped:
        raise ValueError(f"{checkpoint_dir}: {len(reshaped)} weights do not have the shapes its config.json gives, e.g. "
                         f"{reshaped[0]} is {shapes[reshaped[0]]}, not {expected[reshaped[0]]}")
    state = load_state_dict(files, dtype, device)
    non_finite = [key for key, tensor in state.items() if not torch.isfinite(tensor).all()]
    if non_finite:
        raise ValueError(f"{checkpoint_dir} holds NaN or inf (as {str(dtype).removeprefix('torch.')}) in {len(non_finite)} "
                         f"weight tensor(s), e.g. {non_finite[0]}: a corrupt file or a diverged training run")
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
    config = dict(model.config)
    if tokenizer is not None:  # what a loader needs to place the images in the prompt (Isaac hard-codes Eagle's 151669)
        config |= {"image_token_id": tokenizer.convert_tokens_to_ids(IMAGE_CONTEXT_TOKEN), "tokens_per_image": model.tokens_per_image}
    (directory / "config.json").write_text(json.dumps(config, indent=2))
    (directory / "experiment_cfg").mkdir()
    (directory / "experiment_cfg" / "metadata.json").write_text(json.dumps(metadata, indent=2))
    if tokenizer is not None:
        tokenizer.save_pretrained(str(directory / TOKENIZER_SUBDIR))
        make_tokenizer_config_portable(directory / TOKENIZER_SUBDIR / "tokenizer_config.json")
    return directory


def make_tokenizer_config_portable(path: Path) -> None:
    """Rewrite a tokenizer_config.json that transformers 5 saved so transformers 4.51 (this project's floor,
    and Isaac N1.5's pin) reads it too: v5 lists the added special tokens as `extra_special_tokens`, which
    4.51 reads as a name -> token dict and fails on; both read the list as `additional_special_tokens`."""
    config = json.loads(path.read_text())
    extra = config.get("extra_special_tokens")
    if not isinstance(extra, list):
        return
    listed = config.pop("additional_special_tokens", None) or []
    config["additional_special_tokens"] = listed + [token for token in config.pop("extra_special_tokens") if token not in listed]
    path.write_text(json.dumps(config, indent=2))


# ---------------------------------------------------------------------------------------------
# Metadata: the embodiment's keys and normalization statistics.
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
        """Parse the {tag: DatasetMetadata} layout of metadata.json (KeyError for a missing part), refusing with a
        ValueError what the file could make a simulator or the model allocate or compute: camera resolutions
        beyond MAX_CAMERA_SIDE, statistics that are not finite, not of one length per key (1 to MAX_WIDTH),
        or with min above max."""
        if embodiment_tag not in EMBODIMENT_TAG_TO_ID:
            raise ValueError(f"unknown embodiment tag {embodiment_tag!r}: known tags are {sorted(EMBODIMENT_TAG_TO_ID)} (metadata.json has {sorted(metadata)}).")
        if embodiment_tag not in metadata:
            raise ValueError(f"metadata.json has no entry for embodiment tag {embodiment_tag!r}; it has {sorted(metadata)}. Pass one of those.")
        entry = metadata[embodiment_tag]
        modalities, statistics = entry["modalities"], entry["statistics"]
        video = dict(modalities["video"])
        for camera, info in video.items():
            resolution = info["resolution"]
            if not (isinstance(resolution, list) and len(resolution) == 2
                    and all(type(side) is int and 1 <= side <= MAX_CAMERA_SIDE for side in resolution)):
                raise ValueError(f"video.{camera} resolution must be [width, height], whole numbers from 1 to "
                                 f"{MAX_CAMERA_SIDE}, got {resolution!r}")

        def stats(kind: str) -> dict[str, dict[str, np.ndarray]]:
            keys = modalities.get(kind) or statistics[kind]  # modality order is the concatenation order
            parsed = {}
            for key in keys:
                with np.errstate(over="ignore"):  # a value beyond float32's range becomes inf, refused below
                    values = {name: np.asarray(v, dtype=np.float32) for name, v in statistics[kind][key].items()}
                low, high = values["min"], values["max"]
                if not 1 <= low.size <= MAX_WIDTH or any(v.shape != (low.size,) for v in values.values()):
                    raise ValueError(f"{kind}.{key} statistics must be lists of one length, 1 to {MAX_WIDTH:,}, got "
                                     f"{ {name: v.shape for name, v in values.items()} }")
                if not all(np.isfinite(v).all() for v in values.values()) or (low > high).any():
                    raise ValueError(f"{kind}.{key} statistics must be finite float32 numbers with min <= max")
                parsed[key] = values
            return parsed

        return cls(embodiment_tag, video, stats("state"), stats("action"), action_horizon=action_horizon)

    @classmethod
    def from_reply(cls, reply: object) -> GR00TMetadata:
        """The metadata a GR00T server sends (`dataclasses.asdict` of one), held to what `from_json` demands of a
        checkpoint's file: a server is as untrusted as a file. ValueError saying what is wrong."""
        names = {field.name for field in fields(cls)}
        if not (isinstance(reply, dict) and {"embodiment_tag", "video", "state", "action"} <= set(reply) <= names):
            keys = sorted(map(str, reply))[:10] if isinstance(reply, dict) else type(reply).__name__
            raise ValueError(f"its metadata must be a dict of {sorted(names)}, got {keys}")
        horizon, language_key = reply.get("action_horizon", 16), reply.get("language_key", DEFAULT_LANGUAGE_KEY)
        units = reply.get("joint_units")
        if not (type(horizon) is int and 1 <= horizon <= MAX_ACTION_HORIZON):
            raise ValueError(f"its action_horizon must be a whole number from 1 to {MAX_ACTION_HORIZON}, got {horizon!r:.40}")
        if not (isinstance(language_key, str) and len(language_key) <= 200) or not (units is None or isinstance(units, str)):
            raise ValueError(f"its language_key and joint_units must be short strings, got {language_key!r:.40}, {units!r:.40}")
        tag, state, action = reply["embodiment_tag"], reply["state"], reply["action"]
        try:
            layout = {"modalities": {"video": reply["video"], "state": list(state), "action": list(action)},
                      "statistics": {"state": state, "action": action}}
            parsed = cls.from_json({tag: layout}, tag, horizon)
        except KeyError as err:
            raise ValueError(f"its metadata lacks {err}") from None
        except (TypeError, AttributeError) as err:
            raise ValueError(f"its metadata is malformed: {err}") from None
        parsed.language_key, parsed.joint_units = language_key, units
        return parsed

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
    """GR00TMetadata of a checkpoint directory (see `resolve_checkpoint`); ValueError naming the file if it is malformed."""
    config = read_config(checkpoint_dir)
    path = checkpoint_dir / "experiment_cfg" / "metadata.json"
    try:
        parsed = GR00TMetadata.from_json(read_json(path), embodiment_tag, config.get("action_horizon", 16))
    except KeyError as err:
        raise ValueError(f"{path} lacks {err} in its {embodiment_tag!r} entry, which Isaac-GR00T fine-tuning writes") from None
    except (TypeError, AttributeError, ValueError) as err:
        raise ValueError(f"{path}: {err}") from None
    try:
        parsed.joint_units = json.loads((checkpoint_dir / TRAINING_RECORD).read_text()).get("joint_units")
    except (OSError, ValueError, AttributeError):  # Isaac's checkpoints have no such record
        pass
    return parsed


# ---------------------------------------------------------------------------------------------
# Command line.
# ---------------------------------------------------------------------------------------------


def print_info(checkpoint_dir: Path, metadata: GR00TMetadata) -> None:
    """Modality keys, dims and statistics of a checkpoint: what a sim integration needs to map cameras and joints."""
    index = checkpoint_dir / "model.safetensors.index.json"
    future = FUTURE_TOKENS_KEY in read_json(index).get("weight_map", {}) if index.is_file() else "unknown (no index)"
    print(f"checkpoint: {checkpoint_dir}\nembodiment: {metadata.embodiment_tag} (id {EMBODIMENT_TAG_TO_ID[metadata.embodiment_tag]})"
          f"\nfuture_tokens: {future}\nlanguage: {metadata.language_key}")
    for camera, info in metadata.video.items():
        print(f"video.{camera}: {info}")
    for kind, stats in (("state", metadata.state), ("action", metadata.action)):
        for key, s in stats.items():
            print(f"{kind}.{key} [{len(s['min'])}]: min {np.round(s['min'], 3).tolist()} max {np.round(s['max'], 3).tolist()}")
