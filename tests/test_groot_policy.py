"""Tests for groot_policy.py (GR00TPolicy over groot_model.py and groot_checkpoint.py) on tiny random
checkpoints written in the real Isaac on-disk format, locally and served by groot_server.py.

No network and no GPU: the checkpoints and the tokenizer (real Qwen2 file layout, byte-level vocab)
come from groot_fixtures.py, and the servers are made here, on 127.0.0.1 only.
"""

import threading

import numpy as np
import pytest
import torch

import groot_checkpoint
import groot_server
import serve_groot
from groot_checkpoint import EMBED_TOKENS_KEY, FUTURE_TOKENS_KEY
from groot_fixtures import (  # noqa: F401 (fixtures: checkpoint_dir, tokenizer_dir, one_torch_thread)
    ARM_STATS, METADATA, checkpoint_dir, free_port, one_torch_thread, stats, tokenizer_dir, write_checkpoint,
)
from groot_policy import GR00TPolicy, build_prompt, normalize_min_max, preprocess_images, unnormalize_min_max
from groot_server import GR00TClient, GR00TServer


@pytest.fixture(scope="module")
def policy(checkpoint_dir, tokenizer_dir):
    return GR00TPolicy.from_pretrained(checkpoint_dir, tokenizer=tokenizer_dir, dtype="float32", device="cpu", seed=0)


def observation(batch: int = 2, seed: int = 0, instructions=None) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "video.front": rng.integers(0, 256, (batch, 1, 72, 96, 3), dtype=np.uint8),
        "video.wrist": rng.integers(0, 256, (batch, 1, 72, 96, 3), dtype=np.uint8),
        "state.single_arm": rng.uniform(-1.5, 1.5, (batch, 1, 5)),
        "state.gripper": np.zeros((batch, 1, 1)),
        "annotation.human.task_description": instructions or ["slide the paper into the red square"] * batch,
    }


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ----- loading and inference -----------------------------------------------------------------


def test_tiny_checkpoint_gives_chunks_per_action_key(policy):
    actions = policy.get_action(observation(batch=3))
    assert set(actions) == {"action.single_arm", "action.gripper"}
    assert actions["action.single_arm"].shape == (3, 16, 5) and actions["action.gripper"].shape == (3, 16, 1)
    assert all(a.dtype == np.float32 and np.isfinite(a).all() for a in actions.values())


def test_same_seed_same_chunk_other_seed_other_chunk(policy):
    obs = observation()
    first, again = policy.get_action(obs, seeded(7)), policy.get_action(obs, seeded(7))
    other = policy.get_action(obs, seeded(8))
    np.testing.assert_array_equal(first["action.single_arm"], again["action.single_arm"])
    assert not np.allclose(first["action.single_arm"], other["action.single_arm"])
    # Noise is drawn per batch row: identical observations still get different chunks.
    assert not np.allclose(first["action.single_arm"][0], first["action.single_arm"][1])


def test_zero_noise_makes_the_chunk_a_function_of_the_observation(checkpoint_dir, tokenizer_dir, policy):
    zero = GR00TPolicy.from_pretrained(checkpoint_dir, tokenizer=tokenizer_dir, dtype="float32", device="cpu", noise="zero")
    obs = observation()
    obs = {key: value[:1].repeat(2, axis=0) if key != "annotation.human.task_description" else value for key, value in obs.items()}
    first, again = zero.get_action(obs, seeded(7)), zero.get_action(obs, seeded(8))  # the generator plays no part
    np.testing.assert_array_equal(first["action.single_arm"], again["action.single_arm"])
    np.testing.assert_array_equal(first["action.single_arm"][0], first["action.single_arm"][1])  # one observation, one chunk
    drawn = policy.get_action(obs, seeded(7))["action.single_arm"]  # same weights, noise="random"
    assert not np.allclose(drawn[0], drawn[1]) and not np.allclose(drawn[0], first["action.single_arm"][0])
    with pytest.raises(ValueError, match="noise must be one of"):
        GR00TPolicy(zero.model, zero.tokenizer, zero.metadata, noise="mean")


def test_policy_seed_makes_the_call_sequence_reproducible(checkpoint_dir, tokenizer_dir):
    def two_calls():
        p = GR00TPolicy.from_pretrained(checkpoint_dir, tokenizer=tokenizer_dir, dtype="float32", device="cpu", seed=3)
        return [p.get_action(observation())["action.single_arm"] for _ in range(2)]

    (a1, a2), (b1, b2) = two_calls(), two_calls()
    np.testing.assert_array_equal(a1, b1)
    np.testing.assert_array_equal(a2, b2)
    assert not np.allclose(a1, a2)


def test_actions_are_the_unnormalized_model_output(policy):
    obs = observation()
    normalized = policy.model.get_action(**policy.prepare_inputs(obs), image_token_id=policy.image_token_id, generator=seeded(1)).numpy()
    actions = policy.get_action(obs, seeded(1))
    np.testing.assert_allclose(actions["action.single_arm"], unnormalize_min_max(normalized[..., :5], policy.metadata.action["single_arm"]), rtol=1e-6)
    np.testing.assert_allclose(actions["action.gripper"], unnormalize_min_max(normalized[..., 5:6], policy.metadata.action["gripper"]), rtol=1e-6)


def test_clipped_actions_land_inside_the_statistics_range(checkpoint_dir, tokenizer_dir):
    policy = GR00TPolicy.from_pretrained(checkpoint_dir, tokenizer=tokenizer_dir, dtype="float32", device="cpu", seed=0, clip_actions=True)
    actions = policy.get_action(observation(batch=4))
    for key, stats in policy.metadata.action.items():
        chunk = actions[f"action.{key}"]
        assert (chunk >= stats["min"] - 1e-5).all() and (chunk <= stats["max"] + 1e-5).all()
        assert chunk.std() > 0  # not collapsed onto a bound


def test_unbatched_observation_and_mixed_instructions(policy):
    single = {k: v[0] for k, v in observation(batch=1).items()}
    assert policy.get_action(single)["action.single_arm"].shape == (16, 5)
    # Different instruction lengths in one batch exercise left padding.
    batch = policy.get_action(observation(batch=2, instructions=["push", "slide the sheet of paper into the square"]))
    assert batch["action.single_arm"].shape == (2, 16, 5)


def test_images_state_and_instruction_all_reach_the_actions(policy):
    obs = observation()
    reference = policy.get_action(obs, seeded(0))["action.single_arm"]
    changed = {
        "front image": obs | {"video.front": 255 - obs["video.front"]},
        "state": obs | {"state.single_arm": -obs["state.single_arm"]},
        "instruction": obs | {"annotation.human.task_description": ["lift the gripper"] * 2},
        # Cameras may come at different resolutions; each is cropped and resized on its own.
        "wrist resolution": obs | {"video.wrist": np.zeros((2, 1, 224, 224, 3), dtype=np.uint8)},
    }
    for name, variant in changed.items():
        assert not np.allclose(policy.get_action(variant, seeded(0))["action.single_arm"], reference), name


@pytest.mark.parametrize("variant", ["no_future_tokens", "bfloat16_weights", "lm_head_only", "single_file"])
def test_checkpoint_variants_load(variant, tmp_path, tokenizer_dir):
    drop = {"no_future_tokens": [FUTURE_TOKENS_KEY], "lm_head_only": [EMBED_TOKENS_KEY]}.get(variant, [])
    directory = write_checkpoint(tmp_path / variant, drop_keys=drop, dtype=torch.bfloat16 if variant == "bfloat16_weights" else torch.float32,
                                 shards=1 if variant == "single_file" else 2)
    outputs = {}
    for dtype in ("float32", "bfloat16"):
        policy = GR00TPolicy.from_pretrained(directory, tokenizer=tokenizer_dir, dtype=dtype, device="cpu")
        assert policy.model.action_head.vlln.weight.dtype == getattr(torch, dtype)
        assert (policy.model.action_head.future_tokens is None) == (variant == "no_future_tokens")
        outputs[dtype] = policy.get_action(observation(), seeded(0))["action.single_arm"]
        assert outputs[dtype].shape == (2, 16, 5)
    # bf16 compute follows fp32 compute up to bf16 rounding (same noise: it is drawn in fp32).
    np.testing.assert_allclose(outputs["bfloat16"], outputs["float32"], atol=0.25)


# ----- errors ---------------------------------------------------------------------------------


def test_missing_metadata_json_is_a_clear_error(tmp_path, tokenizer_dir):
    directory = write_checkpoint(tmp_path / "ckpt")
    (directory / "experiment_cfg" / "metadata.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"metadata\.json is missing.*normalization statistics"):
        GR00TPolicy.from_pretrained(directory, tokenizer=tokenizer_dir, device="cpu")


def test_missing_tokenizer_files_are_a_clear_error(tmp_path, checkpoint_dir):
    (tmp_path / "tokenizer_config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match=r"lacks vocab\.json \+ merges\.txt.*--groot-tokenizer"):
        GR00TPolicy.from_pretrained(checkpoint_dir, tokenizer=tmp_path, device="cpu")
    with pytest.raises(FileNotFoundError, match="GR00T tokenizer"):
        groot_checkpoint.load_tokenizer(tmp_path / "no-such-dir")


def test_unknown_embodiment_tag_is_a_clear_error(checkpoint_dir, tokenizer_dir):
    with pytest.raises(ValueError, match=r"unknown embodiment tag 'so101'.*new_embodiment"):
        GR00TPolicy.from_pretrained(checkpoint_dir, embodiment_tag="so101", tokenizer=tokenizer_dir, device="cpu")
    with pytest.raises(ValueError, match="no entry for embodiment tag 'gr1'"):
        GR00TPolicy.from_pretrained(checkpoint_dir, embodiment_tag="gr1", tokenizer=tokenizer_dir, device="cpu")


def test_metadata_that_does_not_fit_the_model_is_a_clear_error(tmp_path, tokenizer_dir):
    wide = {"new_embodiment": METADATA["new_embodiment"] | {"statistics": METADATA["new_embodiment"]["statistics"] | {
        "state": {"single_arm": stats([-1.0] * 70, [1.0] * 70), "gripper": stats([0.0], [0.0])}}}}
    directory = write_checkpoint(tmp_path / "wide", metadata=wide)
    with pytest.raises(ValueError, match=r"metadata\.json has 71 state and 6 action dims; the model takes at most 64 and 32"):
        GR00TPolicy.from_pretrained(directory, tokenizer=tokenizer_dir, dtype="float32", device="cpu")


def test_missing_observation_key_names_the_expected_keys(policy):
    obs = observation()
    del obs["video.wrist"]
    with pytest.raises(KeyError, match=r"video\.wrist"):
        policy.get_action(obs)


# ----- pre/post-processing pieces ------------------------------------------------------------


def test_image_preprocessing_crops_resizes_and_scales():
    frames = np.full((2, 480, 640, 3), 200, dtype=np.uint8)
    frames[:, :5] = 0  # a border that the 95 % centre crop removes
    pixels = preprocess_images(frames)
    assert pixels.shape == (2, 3, 224, 224)
    # Isaac truncates back to uint8 after the resize, so float error can cost one level (199.9999 -> 199).
    assert pixels.min() >= 199 / 127.5 - 1 - 1e-6 and pixels.max() <= 200 / 127.5 - 1 + 1e-6
    assert (pixels == 200 / 127.5 - 1).float().mean() > 0.5


def test_prompt_has_one_placeholder_block_per_image():
    prompt = build_prompt("push the paper", num_images=2, tokens_per_image=256)
    assert prompt.count("<IMG_CONTEXT>") == 512 and prompt.count("<img>") == 2
    assert prompt.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n<image 1><img>")
    assert prompt.endswith("</img>push the paper<|im_end|>\n<|im_start|>assistant\n")


def test_min_max_normalization_round_trip():
    stats = {"min": np.array([-2.0, 1.0]), "max": np.array([2.0, 1.0])}
    x = np.array([[1.0, 1.0], [-2.0, 1.0]])
    np.testing.assert_allclose(normalize_min_max(x, stats), [[0.5, 0.0], [-1.0, 0.0]])
    np.testing.assert_allclose(unnormalize_min_max(np.array([[0.5, 0.3]]), stats), [[1.0, 1.0]])


def test_metadata_exposes_keys_and_statistics(policy):
    config = policy.modality_config()
    assert config["video"]["modality_keys"] == ["video.front", "video.wrist"]
    assert config["state"]["modality_keys"] == ["state.single_arm", "state.gripper"]
    assert config["action"] == {"delta_indices": list(range(16)), "modality_keys": ["action.single_arm", "action.gripper"]}
    assert policy.metadata.action_dims == {"single_arm": 5, "gripper": 1}
    np.testing.assert_allclose(policy.metadata.state["single_arm"]["max"], ARM_STATS["max"])
    assert policy.metadata.video["front"]["resolution"] == [96, 72]


# ----- served --------------------------------------------------------------------------------


def test_client_round_trips_with_a_local_server(policy):
    server = GR00TServer(policy, host="127.0.0.1", port=0)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    client = GR00TClient("127.0.0.1", server.port, timeout_s=10)
    try:
        assert client.ping()
        assert client.modality_config() == policy.modality_config()
        metadata = client.get_metadata()
        np.testing.assert_array_equal(metadata.action["single_arm"]["min"], policy.metadata.action["single_arm"]["min"])
        obs = observation()
        policy.generator.manual_seed(11)
        remote = client.get_action(obs)
        policy.generator.manual_seed(11)
        local = policy.get_action(obs)
        assert remote.keys() == local.keys()
        for key in local:
            np.testing.assert_array_equal(remote[key], local[key])
        with pytest.raises(RuntimeError, match=f"127.0.0.1:{server.port}.*state.single_arm"):
            client.get_action({k: v for k, v in obs.items() if k != "state.single_arm"} | {"state.gripper": np.zeros((2, 1, 1))})
        client.kill()
        thread.join(timeout=5)
        assert not thread.is_alive()
    finally:
        client.close()


def test_cli_server_with_noise_zero_answers_one_chunk_per_observation(checkpoint_dir, tokenizer_dir):
    port = free_port()
    argv = [str(checkpoint_dir), "--groot-tokenizer", str(tokenizer_dir), "--port", str(port), "--device", "cpu",
            "--dtype", "float32", "--noise", "zero"]
    thread = threading.Thread(target=serve_groot.main, args=(argv,), daemon=True)
    thread.start()
    client = GR00TClient("127.0.0.1", port, timeout_s=60)  # the first reply waits for the model to load
    first, again = client.get_action(observation()), client.get_action(observation())
    np.testing.assert_array_equal(first["action.single_arm"], again["action.single_arm"])
    client.kill()  # a token-less loopback server honours it
    thread.join(timeout=10)
    assert not thread.is_alive()
