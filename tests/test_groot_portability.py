"""GR00T checkpoints that the declared dependency floor reads: the tokenizer files transformers 4.51 and
transformers 5 both load, and the image-token id a checkpoint records and its loader checks.

The floor itself is exercised by .ci/run's optional step, which runs these tests and the other GR00T
tests under transformers 4.51.3 (the version Isaac N1.5 pins)."""

import json
from pathlib import Path

import pytest
import torch

from groot_checkpoint import IMAGE_CONTEXT_TOKEN, load_tokenizer, make_tokenizer_config_portable, save_checkpoint
from groot_fixtures import METADATA, TINY_CONFIG, one_torch_thread, tokenizer_dir  # noqa: F401  (fixtures)
from groot_model import GR00TN15
from groot_policy import GR00TPolicy

COMMITTED = Path(__file__).resolve().parent.parent / "checkpoints" / "groot_n15_small_so101_sim"


def test_the_committed_tokenizer_lists_its_special_tokens_the_way_both_majors_read():
    config = json.loads((COMMITTED / "tokenizer" / "tokenizer_config.json").read_text())
    assert not isinstance(config.get("extra_special_tokens"), list)  # transformers 4.51 fails on a list here
    assert IMAGE_CONTEXT_TOKEN in config["additional_special_tokens"]


def test_a_transformers_5_style_config_is_rewritten_without_losing_a_token(tmp_path):
    path = tmp_path / "tokenizer_config.json"
    path.write_text(json.dumps({"tokenizer_class": "Qwen2Tokenizer", "additional_special_tokens": ["<img>"],
                                "extra_special_tokens": ["<|im_start|>", "<img>", IMAGE_CONTEXT_TOKEN]}))
    make_tokenizer_config_portable(path)
    config = json.loads(path.read_text())
    assert "extra_special_tokens" not in config
    assert config["additional_special_tokens"] == ["<img>", "<|im_start|>", IMAGE_CONTEXT_TOKEN]
    assert config["tokenizer_class"] == "Qwen2Tokenizer"


@pytest.fixture(scope="module")
def saved_checkpoint(tmp_path_factory, tokenizer_dir):  # noqa: F811
    torch.manual_seed(0)
    directory = tmp_path_factory.mktemp("saved") / "checkpoint"
    return save_checkpoint(GR00TN15(TINY_CONFIG), directory, METADATA, tokenizer=load_tokenizer(tokenizer_dir))


def test_a_saved_checkpoint_records_its_image_tokens_and_a_portable_tokenizer(saved_checkpoint):
    config = json.loads((saved_checkpoint / "config.json").read_text())
    tokenizer = load_tokenizer(saved_checkpoint / "tokenizer")
    assert config["image_token_id"] == tokenizer.convert_tokens_to_ids(IMAGE_CONTEXT_TOKEN)
    assert config["tokens_per_image"] == GR00TN15(TINY_CONFIG).tokens_per_image == 16
    tokenizer_config = json.loads((saved_checkpoint / "tokenizer" / "tokenizer_config.json").read_text())
    assert not isinstance(tokenizer_config.get("extra_special_tokens"), list)
    assert GR00TPolicy.from_pretrained(saved_checkpoint, device="cpu").image_token_id == config["image_token_id"]


def test_a_tokenizer_that_gives_another_image_token_id_is_refused(saved_checkpoint, tmp_path):
    copy = tmp_path / "checkpoint"
    copy.mkdir()
    for path in saved_checkpoint.rglob("*"):
        if path.is_file():
            (copy / path.relative_to(saved_checkpoint)).parent.mkdir(parents=True, exist_ok=True)
            (copy / path.relative_to(saved_checkpoint)).write_bytes(path.read_bytes())
    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps(config | {"image_token_id": 151669}))  # Eagle's id, not this tokenizer's
    with pytest.raises(ValueError, match="image_token_id 151669"):
        GR00TPolicy.from_pretrained(copy, device="cpu")
