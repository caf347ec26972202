"""Tests for groot_checkpoint.py (and the architecture in groot_model.py) against the Isaac on-disk format.

No network and no GPU: the tiny checkpoints and the tokenizer come from groot_fixtures.py; the
full-size model is built on the meta device only.
"""

import json
import re
import shutil
import time
from collections import defaultdict
from pathlib import Path

import huggingface_hub
import pytest
import torch
from safetensors.torch import load_file, save_file

import groot_checkpoint
import groot_tools
from groot_fixtures import (  # noqa: F401 (fixtures: checkpoint_dir, one_torch_thread)
    BYTE_VOCAB_SIZE, REAL_CONFIG, TINY_CONFIG, checkpoint_dir, one_torch_thread, write_tokenizer,
)
from groot_model import build_model

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).resolve().parent.parent


# ----- errors ---------------------------------------------------------------------------------


def test_a_checkpoint_that_cannot_be_found_or_downloaded_says_what_to_pass(tmp_path, monkeypatch):
    what_to_pass = r"--groot\.model <directory>.*checkpoints/groot_n15_small_so101_sim works offline"
    with pytest.raises(FileNotFoundError, match=rf"is not a directory \(nor a Hugging Face hub id.*{what_to_pass}"):
        groot_checkpoint.resolve_checkpoint(tmp_path / "no-such-dir")

    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(FileNotFoundError, match=rf"'owner/name' is not a local directory and could not be downloaded.*"
                                               rf"\(OSError: no network\).*{what_to_pass}"):
        groot_checkpoint.resolve_checkpoint("owner/name")
    monkeypatch.chdir(ROOT)  # and the committed checkpoint the message names does resolve, offline
    committed = "checkpoints/groot_n15_small_so101_sim"
    assert groot_checkpoint.resolve_checkpoint(committed) == Path(committed)


def test_missing_config_json_is_a_clear_error(tmp_path):
    (tmp_path / "experiment_cfg").mkdir()
    with pytest.raises(FileNotFoundError, match=r"config\.json is missing: not an Isaac-GR00T N1\.5 checkpoint"):
        groot_checkpoint.resolve_checkpoint(tmp_path)


def test_tokenizer_without_image_tokens_is_rejected(tmp_path):
    directory = write_tokenizer(tmp_path)
    (directory / "added_tokens.json").write_text(json.dumps({"<|endoftext|>": BYTE_VOCAB_SIZE}))
    config = json.loads((directory / "tokenizer_config.json").read_text())
    (directory / "tokenizer_config.json").write_text(json.dumps(config | {"additional_special_tokens": []}))
    with pytest.raises(ValueError, match="lacks the special tokens"):
        groot_checkpoint.load_tokenizer(directory)


# ----- limits on what a checkpoint directory may ask for -------------------------------------


def edited_copy(checkpoint_dir: Path, target: Path, config=None, metadata=None) -> Path:
    """A copy of the checkpoint whose config.json and experiment_cfg/metadata.json the `config` and `metadata`
    functions edit in place."""
    shutil.copytree(checkpoint_dir, target)
    for name, edit in (("config.json", config), ("experiment_cfg/metadata.json", metadata)):
        if edit is not None:
            content = json.loads((target / name).read_text())
            edit(content)
            (target / name).write_text(json.dumps(content))
    return target


def setting(path: str, value):
    """An edit that sets the dotted `path` of a JSON object to `value`, or deletes it when `value` is DELETE."""
    def edit(content: dict) -> None:
        *parents, name = path.split(".")
        for parent in parents:
            content = content[parent]
        if value is DELETE:
            del content[name]
        else:
            content[name] = value
    return edit


DELETE = object()


@pytest.mark.parametrize("path, value, message", [
    ("action_head_cfg.num_inference_timesteps", 10**9, r"action_head_cfg\.num_inference_timesteps must be a whole number from 1 to 1,000, got 1000000000"),
    ("action_head_cfg.diffusion_model_cfg.num_layers", 1e7, r"action_head_cfg\.diffusion_model_cfg\.num_layers must be a whole number from 1 to 256, got 10000000\.0"),
    ("backbone_cfg.vision_config.image_size", 10**6, r"backbone_cfg\.vision_config\.image_size must be a whole number from 1 to 2,048"),
    ("backbone_cfg.text_config.hidden_size", 10**7, r"backbone_cfg\.text_config\.hidden_size must be a whole number from 1 to 65,536"),
    ("action_head_cfg.action_horizon", 10**9, r"action_head_cfg\.action_horizon must be a whole number from 1 to 1,024"),
    ("action_horizon", 10**9, r"action_horizon must be a whole number from 1 to 1,024"),
    ("action_head_cfg.hidden_size", -3, r"action_head_cfg\.hidden_size must be a whole number from 1 to 65,536, got -3"),
    ("action_head_cfg.hidden_size", 16.5, r"action_head_cfg\.hidden_size .* got 16\.5"),
    ("action_head_cfg.hidden_size", float("nan"), r"action_head_cfg\.hidden_size .* got nan"),
    ("action_head_cfg.hidden_size", True, r"action_head_cfg\.hidden_size .* got True"),
    ("action_head_cfg.hidden_size", "32", r"action_head_cfg\.hidden_size .* got '32'"),
    ("action_head_cfg.hidden_size", DELETE, r"the configuration lacks action_head_cfg\.hidden_size"),
    ("backbone_cfg.vision_config.patch_size", 2, r"backbone_cfg\.vision_config gives 12,544 tokens per image .* 1 to 4,096"),
    ("backbone_cfg.text_config.rope_scaling", {"rope_type": "dynamic", "factor": 1e9}, r"backbone_cfg\.text_config may set only the sizes"),
    ("torch_dtype", "load", r"torch_dtype must be one of \('bfloat16', 'float16', 'float32'\), got 'load'"),
])
def test_config_sizes_beyond_their_limits_are_refused_before_anything_is_built(tmp_path, checkpoint_dir, path, value, message):
    """Each of these once hung a loader or a policy for good, or asked for 22 GB to 128 TB."""
    directory = edited_copy(checkpoint_dir, tmp_path / "checkpoint", config=setting(path, value))
    start = time.monotonic()
    for load in (groot_checkpoint.load_model, groot_checkpoint.load_metadata):
        with pytest.raises(ValueError, match=rf"^{re.escape(str(directory / 'config.json'))}: {message}"):
            load(directory)
    assert time.monotonic() - start < 5


def test_a_model_over_the_parameter_cap_is_refused_before_its_weights_are_read(tmp_path, checkpoint_dir, monkeypatch):
    wide = TINY_CONFIG["backbone_cfg"]["text_config"] | {"hidden_size": 32768, "intermediate_size": 65536}  # 12.9 B in its 2 layers
    directory = edited_copy(checkpoint_dir, tmp_path / "wide", config=setting("backbone_cfg.text_config", wide))
    monkeypatch.setattr(groot_checkpoint, "load_state_dict", lambda *args: pytest.fail("weights were read"))
    with pytest.raises(ValueError, match=r"config\.json: this configuration has 1\d\.\d B parameters, over the limit of 8 B"):
        groot_checkpoint.load_model(directory)


def test_weights_that_are_not_finite_or_not_the_configured_shapes_are_refused(tmp_path, checkpoint_dir):
    directory = edited_copy(checkpoint_dir, tmp_path / "nan")
    shard = groot_checkpoint.safetensors_files(directory)[0]
    tensors = load_file(shard)
    key = sorted(tensors)[0]
    tensors[key].view(-1)[3] = float("nan")
    save_file(tensors, shard)
    with pytest.raises(ValueError, match=rf"holds NaN or inf \(as float32\) in 1 weight tensor\(s\), e\.g\. {re.escape(key)}"):
        groot_checkpoint.load_model(directory, torch.float32)
    tensors[key].view(-1)[3] = 3.4e38  # finite in float32, inf in bfloat16
    save_file(tensors, shard)
    assert groot_checkpoint.load_model(directory, torch.float32) is not None
    with pytest.raises(ValueError, match=rf"holds NaN or inf \(as bfloat16\) in 1 weight tensor\(s\)"):
        groot_checkpoint.load_model(directory, torch.bfloat16)
    tensors[key] = torch.zeros(tensors[key].numel() + 1)  # another shape than config.json gives
    save_file(tensors, shard)
    with pytest.raises(ValueError, match=rf"1 weights do not have the shapes its config\.json gives, e\.g\. {re.escape(key)} is "
                                         rf"\({tensors[key].numel()},\)"):
        groot_checkpoint.load_model(directory, torch.float32)


def test_unreadable_weights_and_shards_outside_the_checkpoint_are_one_clear_error(tmp_path, checkpoint_dir):
    directory = edited_copy(checkpoint_dir, tmp_path / "broken")
    first, second = groot_checkpoint.safetensors_files(directory)
    shutil.copy(second, tmp_path / "outside.safetensors")
    first.write_bytes(first.read_bytes()[: first.stat().st_size // 2])  # truncated
    with pytest.raises(ValueError, match=rf"{re.escape(str(first))} is not a readable safetensors file"):
        groot_checkpoint.load_model(directory)
    first.write_bytes(b"\xff" * 64)  # garbage
    with pytest.raises(ValueError, match=rf"{re.escape(str(first))} is not a readable safetensors file"):
        groot_checkpoint.load_model(directory)
    index = directory / "model.safetensors.index.json"
    content = json.loads(index.read_text())
    content["weight_map"] = {key: "../outside.safetensors" if name == second.name else name for key, name in content["weight_map"].items()}
    index.write_text(json.dumps(content))
    with pytest.raises(ValueError, match=r"names shards outside .*\['\.\./outside\.safetensors'\]"):
        groot_checkpoint.load_model(directory)
    index.write_text("{not json")
    with pytest.raises(ValueError, match=r"model\.safetensors\.index\.json is not valid JSON"):
        groot_checkpoint.load_model(directory)


@pytest.mark.parametrize("path, value, message", [
    ("new_embodiment.modalities.video.front.resolution", [100000, 72], r"video\.front resolution must be \[width, height\], whole numbers from 1 to 4096, got \[100000, 72\]"),
    ("new_embodiment.modalities.video.front.resolution", [96.5, 72], r"video\.front resolution must be"),
    ("new_embodiment.statistics.state.single_arm.max", [1.9, 1.7, float("nan"), 1.6, 2.7], r"state\.single_arm statistics must be finite"),
    ("new_embodiment.statistics.action.single_arm.min", [-1e39, -1.7, -1.6, -1.6, -2.7], r"action\.single_arm statistics must be finite float32"),
    ("new_embodiment.statistics.state.single_arm.min", [3.0, -1.7, -1.6, -1.6, -2.7], r"state\.single_arm statistics must be .* min <= max"),
    ("new_embodiment.statistics.state.single_arm.q99", [1.0], r"state\.single_arm statistics must be lists of one length"),
    ("new_embodiment.statistics.state.gripper.min", [[0.0]], r"state\.gripper statistics must be lists of one length"),
    ("new_embodiment.statistics.state.gripper.min", "zero", r"metadata\.json: could not convert string"),
    ("new_embodiment.statistics", DELETE, r"metadata\.json lacks 'statistics' in its 'new_embodiment' entry"),
])
def test_metadata_beyond_its_limits_is_refused(tmp_path, checkpoint_dir, path, value, message):
    directory = edited_copy(checkpoint_dir, tmp_path / "checkpoint", metadata=setting(path, value))
    with pytest.raises(ValueError, match=rf"^{re.escape(str(directory / 'experiment_cfg'))}.*{message}"):
        groot_checkpoint.load_metadata(directory)


# ----- architecture vs the real checkpoint keys ---------------------------------------------


def test_full_size_architecture_matches_the_real_checkpoint_keys():
    """The full N1.5 model, parameters on meta, has exactly the Isaac checkpoint's names and shapes.

    tests/data/groot_n15_checkpoint_keys.tsv lists each key with layer indices written as N, the
    number of layers, and the shape of the first layer's tensor."""
    model = build_model(REAL_CONFIG)
    state = model.state_dict()
    collapsed = defaultdict(list)
    for key, tensor in state.items():
        collapsed[re.sub(r"\.\d+(?=\.)", ".N", key)].append(tuple(tensor.shape))
    expected = {}
    for line in (DATA / "groot_n15_checkpoint_keys.tsv").read_text().splitlines():
        key, count, shape = line.split("\t")
        expected[key] = (int(count), tuple(int(d) for d in re.findall(r"\d+", shape)))
    assert {k: (len(v), v[0]) for k, v in collapsed.items()} == expected
    assert len(state) == 899  # as in the Isaac checkpoint, lm_head included
    assert sum(p.numel() for p in model.parameters()) == 2_413_522_880  # unique parameters (lm_head is tied)
    blocks = model.action_head.model.transformer_blocks
    assert blocks[0].attn1.to_k.weight.shape == (1536, 2048)  # even blocks cross-attend to the VL tokens
    assert blocks[1].attn1.to_k.weight.shape == (1536, 1536)  # odd blocks self-attend


# ----- command line --------------------------------------------------------------------------


def test_cli_info_prints_keys_and_statistics(checkpoint_dir, capsys):
    groot_tools.main(["info", str(checkpoint_dir)])
    out = capsys.readouterr().out
    assert "video.front" in out and "action.gripper [1]" in out and "future_tokens: True" in out
    with pytest.raises(SystemExit) as exit_info:
        groot_tools.main(["--help"])
    assert exit_info.value.code == 0


def test_convert_stores_the_weights_in_bfloat16_and_keeps_everything_else(tmp_path, checkpoint_dir):
    smaller = tmp_path / "bf16"
    groot_tools.main(["convert", str(checkpoint_dir), str(smaller), "--dtype", "bfloat16"])
    originals, converted = groot_checkpoint.safetensors_files(checkpoint_dir), groot_checkpoint.safetensors_files(smaller)
    assert [p.name for p in originals] == [p.name for p in converted]
    before = groot_checkpoint.load_state_dict(originals, torch.float32, "cpu")
    after = groot_checkpoint.load_state_dict(converted, torch.float32, "cpu")
    assert before.keys() == after.keys()
    for key, value in before.items():  # each weight is its own bfloat16 rounding
        assert torch.equal(after[key], value.to(torch.bfloat16).float()), key
    assert sum(p.stat().st_size for p in converted) < 0.6 * sum(p.stat().st_size for p in originals)
    others = sorted(p.relative_to(checkpoint_dir) for p in checkpoint_dir.rglob("*") if p.is_file() and p not in originals)
    assert others == sorted(p.relative_to(smaller) for p in smaller.rglob("*") if p.is_file() and p not in converted)
    index = "model.safetensors.index.json"
    assert all((checkpoint_dir / p).read_bytes() == (smaller / p).read_bytes() for p in others if p.name != index)
    if (smaller / index).is_file():  # sharded: the index's weight map stays, its total size is the new one
        from safetensors import safe_open

        stored = 0
        for file in converted:
            with safe_open(str(file), framework="pt") as handle:
                stored += sum(handle.get_tensor(k).numel() * handle.get_tensor(k).element_size() for k in handle.keys())
        assert json.loads((smaller / index).read_text())["metadata"]["total_size"] == stored
    with pytest.raises(FileExistsError, match="not an empty directory"):  # never written over
        groot_checkpoint.convert_checkpoint(checkpoint_dir, smaller, torch.bfloat16)


def test_convert_never_copies_what_a_link_outside_the_checkpoint_points_to(tmp_path, checkpoint_dir, capsys):
    secret = tmp_path / "secret.txt"
    secret.write_text("private")
    source = edited_copy(checkpoint_dir, tmp_path / "linked")
    link = source / "experiment_cfg" / "notes.txt"
    link.symlink_to(secret)
    with pytest.raises(SystemExit) as exit_info:
        groot_tools.main(["convert", str(source), str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1
    assert f"error: {link} is a symbolic link to {secret}, outside the checkpoint" in err
    assert not (tmp_path / "out").exists()
    link.unlink()
    link.symlink_to(source / "config.json")  # a link inside the checkpoint is copied as the file it points to
    groot_tools.main(["convert", str(source), str(tmp_path / "out")])
    copied = tmp_path / "out" / "experiment_cfg" / "notes.txt"
    assert not copied.is_symlink() and copied.read_text() == (source / "config.json").read_text()


def test_cli_bad_input_is_one_line_and_status_2(tmp_path, checkpoint_dir, capsys):
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "keep.txt").write_text("not the converter's")
    wide = edited_copy(checkpoint_dir, tmp_path / "wide", config=setting("action_head_cfg.hidden_size", 10**7))
    torn = edited_copy(checkpoint_dir, tmp_path / "torn", metadata=setting("new_embodiment.modalities", DELETE))
    for argv, message in [
        (["convert", str(checkpoint_dir), str(tmp_path / "used")], "exists and is not an empty directory"),
        (["convert", str(tmp_path / "none"), str(tmp_path / "out")], "no weights in"),
        (["info", str(tmp_path / "no" / "such" / "dir")], "is not a directory"),
        (["info", str(wide)], "hidden_size must be a whole number from 1 to 65,536"),
        (["info", str(torn)], "metadata.json lacks 'modalities'"),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            groot_tools.main(argv)
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and err.startswith("error: ") and err.count("\n") == 1 and message in err, (argv, err)
    assert (tmp_path / "used" / "keep.txt").read_text() == "not the converter's"
