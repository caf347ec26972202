"""GR00T N1.5 training: the flow-matching loss, the train-time image transform, checkpoint writing, and
finetune_groot.py end to end on a tiny checkpoint and on a small camera dataset written here.

No network and no GPU. "Number for number against the original" means here: the loss on fixed noise
and times equals a hand computation of Isaac's published recipe (Isaac-GR00T cannot run here), its
velocity network is the one the inference path integrates, and its default draws are Isaac's, in
Isaac's order, on the same random stream.
"""

import colorsys
import itertools
import json
import math
import pathlib
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors import safe_open

import finetune_groot
import groot_checkpoint
import groot_model
import groot_policy
from base_policies import make_base_policy
from file_faults import edit_json, pretend_mount_point, set_value
from groot_base import default_camera_map
from groot_fixtures import (  # noqa: F401 (fixtures: checkpoint_dir, tokenizer_dir, one_torch_thread)
    METADATA, TINY_CONFIG, checkpoint_dir, one_torch_thread, tokenizer_dir,
)
from groot_model import GR00TN15
from groot_policy import GR00TPolicy, augment_images, preprocess_images, rotate_hue
from joint_units import groot_joint_units
from lerobot_dataset import DatasetWriter, read_dataset
from so101_env import SO101PaperSquareEnv

ROOT = pathlib.Path(__file__).resolve().parent.parent
CAMERAS = ("top_view", "wrist")
GR00T_CAMERAS = ("front", "wrist")
"""their names in modality.json and in checkpoints trained on it (NVIDIA's so100_dualcam names)"""
EPISODE_LENGTHS = (12, 20)  # one episode shorter than the 16-step chunk: padding and masking
IMAGE = 32


def write_dataset(root, lengths=EPISODE_LENGTHS, seed=0, image=IMAGE, cameras=CAMERAS, units="radians", version="v2.1"):
    """A small LeRobot camera dataset (v2.1 and radians by default) from smooth joint paths and random frames."""
    rng = np.random.default_rng(seed)
    writer = DatasetWriter(root, units, 0.02, {"test": True}, cameras=cameras, version=version)
    for length in lengths:
        states = np.zeros((length, 25))
        states[:, :6] = rng.uniform(-0.5, 0.5, 6) + np.cumsum(rng.normal(0, 0.02, (length, 6)), axis=0)
        actions = rng.uniform(-1, 1, (length, 6))
        images = {camera: rng.integers(0, 256, (length, image, image, 3), dtype=np.uint8) for camera in cameras}
        writer.add_episode(states, actions, np.zeros(length), True, images=images)
    assert writer.close()
    return root


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("data") / "demos")


def tiny_head_inputs(batch=3, seed=0):
    torch.manual_seed(seed)
    model = GR00TN15(TINY_CONFIG).eval()  # eval: no dropout, so the loss is a function of the draws
    head = model.action_head
    horizon, dim = head.action_horizon, head.action_dim
    inputs = {
        "vl_features": torch.randn(batch, 7, 64), "state": torch.randn(batch, 1, 64),
        "actions": torch.rand(batch, horizon, dim) * 2 - 1, "action_mask": torch.zeros(batch, horizon, dim),
        "embodiment_id": torch.full((batch,), 31),
    }
    inputs["action_mask"][:, :, :6] = 1.0
    inputs["action_mask"][1, 10:] = 0.0  # sample 1's episode ended after 10 steps
    return head, inputs


# ----- the flow-matching loss --------------------------------------------------------------------


def test_loss_on_fixed_draws_equals_the_recipe_computed_by_hand():
    head, inputs = tiny_head_inputs()
    noise = torch.randn(inputs["actions"].shape)
    t = torch.tensor([0.0, 0.2999, 0.9995])
    loss = head.loss(**inputs, noise=noise, t=t)

    # The recipe, step by step: x_t = (1 - t) noise + t actions, target = actions - noise,
    # timestep = int(1000 t) truncated (0.2999 -> 299, not 300), tokens [state | future | actions + pos].
    actions, mask, emb = inputs["actions"], inputs["action_mask"], inputs["embodiment_id"]
    x_t = torch.stack([(1 - t[i]) * noise[i] + t[i] * actions[i] for i in range(3)])
    timestep = torch.tensor([0, 299, 999])
    with torch.no_grad():
        vl = head.vl_self_attention(head.vlln(inputs["vl_features"]))
        tokens = torch.cat([head.state_encoder(inputs["state"], emb), head.future_tokens.weight.expand(3, -1, -1),
                            head.action_encoder(x_t, timestep, emb) + head.position_embedding.weight[:16]], dim=1)
        predicted = head.action_decoder(head.model(tokens, vl, timestep), emb)[:, -16:].numpy().astype(np.float64)
    target = (actions - noise).numpy().astype(np.float64)
    # One masked mean over every valid element of the batch (not a mean of per-sample means).
    valid = [(i, s, d) for i in range(3) for s in range(16) for d in range(32) if mask[i, s, d] == 1]
    expected = sum((predicted[i, s, d] - target[i, s, d]) ** 2 for i, s, d in valid) / len(valid)
    assert len(valid) == 16 * 6 * 2 + 10 * 6
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    # Another bucket changes the prediction: the timestep reaches the network.
    assert head.loss(**inputs, noise=noise, t=torch.tensor([0.0, 0.3, 0.9995])).item() != pytest.approx(loss.item(), rel=1e-6)


def test_training_velocity_is_the_velocity_inference_integrates():
    # With one Euler step from t = 0 inference returns noise + v(noise, 0); the loss at t = 0 compares that
    # same v with actions - noise.
    head, inputs = tiny_head_inputs()
    head.num_steps = 1
    chunk = head(inputs["vl_features"], inputs["state"], inputs["embodiment_id"], generator=torch.Generator().manual_seed(4))
    noise = torch.randn(chunk.shape, generator=torch.Generator().manual_seed(4))
    velocity = (chunk - noise).detach()
    everything = torch.ones_like(inputs["action_mask"])
    loss = head.loss(**inputs | {"action_mask": everything}, noise=noise, t=torch.zeros(3))
    expected = ((velocity - (inputs["actions"] - noise)) ** 2).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_default_draws_are_isaacs_in_isaacs_order():
    head, inputs = tiny_head_inputs()
    torch.manual_seed(11)
    drawn = head.loss(**inputs)
    torch.manual_seed(11)  # Isaac: noise = randn(actions.shape) first, then s ~ Beta(1.5, 1), t = (0.999 - s) / 0.999
    noise = torch.randn(inputs["actions"].shape)
    t = (0.999 - torch.distributions.Beta(1.5, 1.0).sample([3])) / 0.999
    assert drawn.item() == head.loss(**inputs, noise=noise, t=t).item()

    times = head.sample_time(200_000, "cpu")
    assert times.min() >= -0.001 / 0.999 and times.max() <= 1.0
    assert times.mean().item() == pytest.approx((0.999 - 0.6) / 0.999, abs=0.003)  # E[s] = 1.5 / 2.5
    # P(t < 0.5) = P(s > 0.4995) = 1 - 0.4995 ** 1.5 for s ~ Beta(1.5, 1): skewed toward the noise end.
    assert (times < 0.5).float().mean().item() == pytest.approx(1 - 0.4995**1.5, abs=0.005)


def test_the_loss_trains_under_bf16_autocast(tokenizer_dir):
    # finetune_groot.py runs float32 weights under bf16 autocast on a GPU; CPU autocast stands in for it here.
    torch.manual_seed(0)
    model = GR00TN15(TINY_CONFIG)
    model.set_trainable_parameters()
    tokenizer = groot_checkpoint.load_tokenizer(tokenizer_dir)
    tokens = tokenizer([groot_policy.build_prompt("slide the paper", 2, model.tokens_per_image)] * 2, padding=True, return_tensors="pt")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model.train()(tokens["input_ids"], tokens["attention_mask"], torch.rand(4, 3, 224, 224) * 2 - 1, torch.randn(2, 1, 64),
                             torch.randn(2, 16, 32), torch.ones(2, 16, 32), torch.full((2,), 31),
                             tokenizer.convert_tokens_to_ids(groot_checkpoint.IMAGE_CONTEXT_TOKEN))
    assert loss.dtype == torch.float32 and math.isfinite(loss.item())
    loss.backward()
    for name, parameter in model.named_parameters():
        assert (parameter.grad is not None) == parameter.requires_grad, name
        assert parameter.grad is None or torch.isfinite(parameter.grad).all(), name


# ----- train-time images -------------------------------------------------------------------------


def test_augmentation_shares_one_draw_across_views_and_keeps_the_inference_scale():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (1, 64, 64, 3), dtype=np.uint8)
    views = np.concatenate([frame, frame])
    out = augment_images(views, 224, torch.Generator().manual_seed(0))
    assert out.shape == (2, 3, 224, 224) and out.min() >= -1 and out.max() <= 1
    torch.testing.assert_close(out[0], out[1])  # one crop and one jitter draw for all the views of a sample
    other = augment_images(views, 224, torch.Generator().manual_seed(1))
    assert not torch.allclose(out, other)
    assert not torch.allclose(out[:1], preprocess_images(frame, 224))

    # Without jitter it is the inference transform with each sample's crop at its drawn offset (60 x 60 of 64 x 64).
    batch = rng.integers(0, 256, (3, 2, 64, 64, 3), dtype=np.uint8)
    plain = augment_images(torch.from_numpy(batch), 224, torch.Generator().manual_seed(5),
                           jitter=dict(brightness=0, contrast=0, saturation=0, hue=0))
    generator = torch.Generator().manual_seed(5)
    tops, lefts = (torch.randint(64 - 60 + 1, (3,), generator=generator) for _ in range(2))
    assert len(set(zip(tops.tolist(), lefts.tolist()))) > 1
    for sample, (top, left) in enumerate(zip(tops.tolist(), lefts.tolist())):
        crop = torch.from_numpy(batch[sample]).permute(0, 3, 1, 2).float()[..., top:top + 60, left:left + 60] / 255
        resized = torch.nn.functional.interpolate(crop, size=(224, 224), mode="bilinear", align_corners=False, antialias=True)
        expected = (resized * 255).clamp(0, 255).to(torch.uint8).float() / 127.5 - 1
        # hue rotation by 0 may move a value by one grey level
        assert (plain[2 * sample:2 * sample + 2] - expected).abs().max() <= 1 / 127.5 + 1e-6


def test_each_sample_of_a_batch_gets_its_own_colour_jitter():
    images = torch.full((4, 2, 3, 8, 8), 0.5)
    images[..., 0, :, :] = 0.7  # a reddish grey, so that every operation changes it
    jittered = groot_policy.color_jitter(images, torch.Generator().manual_seed(0), brightness=0.3, contrast=0.4, saturation=0.5, hue=0.08)
    torch.testing.assert_close(jittered[:, 0], jittered[:, 1])  # the views of a sample share the draw
    assert len({tuple(jittered[i, 0, :, 0, 0].tolist()) for i in range(4)}) == 4  # the samples do not
    # Brightness alone: sample i is scaled by its own factor 1 + 0.3 * (2u - 1), u the generator's draw after the order's.
    generator = torch.Generator().manual_seed(1)
    scaled = groot_policy.color_jitter(images, generator, brightness=0.3, contrast=0, saturation=0, hue=0)
    generator = torch.Generator().manual_seed(1)
    torch.rand(4, 4, generator=generator)
    factors = 1 + 0.3 * (2 * torch.rand(4, 3, generator=generator)[:, 0] - 1)
    torch.testing.assert_close(scaled, (images * factors.view(4, 1, 1, 1, 1)).clamp(0, 1), atol=1e-6, rtol=0)


def test_hue_rotation_matches_colorsys():
    images = torch.rand(1, 3, 4, 4)
    rotated = rotate_hue(images, 0.08)
    for i in range(4):
        for j in range(4):
            h, s, v = colorsys.rgb_to_hsv(*images[0, :, i, j].tolist())
            np.testing.assert_allclose(rotated[0, :, i, j].numpy(), colorsys.hsv_to_rgb((h + 0.08) % 1, s, v), atol=1e-6)


# ----- freezing, checkpoint writing, tokenizer ------------------------------------------------------


def test_tune_flags_freeze_what_isaac_freezes_and_keep_frozen_parts_in_eval_mode():
    model = GR00TN15(TINY_CONFIG)
    model.set_trainable_parameters()  # Isaac's defaults: LLM and vision frozen, projector and DiT trained
    trained = {name.split(".")[1] if name.startswith("action_head") else name.split(".")[2]
               for name, p in model.named_parameters() if p.requires_grad}
    assert trained == {"vlln", "vl_self_attention", "model", "state_encoder", "action_encoder", "action_decoder",
                       "future_tokens", "position_embedding"}
    model.train()
    vlm, head = model.backbone["eagle_model"], model.action_head
    assert not vlm.language_model.training and not vlm.vision_model.training
    assert head.model.training and head.vl_self_attention.training
    model.set_trainable_parameters(tune_llm=True, tune_visual=True, tune_projector=False, tune_diffusion_model=False)
    assert vlm.language_model.training and not head.model.training and not head.state_encoder.layer1.W.requires_grad
    assert head.vl_self_attention.transformer_blocks[0].attn1.to_q.weight.requires_grad  # always trained, as in Isaac
    model.eval()
    assert not any(m.training for m in model.modules())


def test_save_checkpoint_shards_round_trip_without_the_tied_lm_head(tmp_path, tokenizer_dir):
    torch.manual_seed(0)
    model = GR00TN15(TINY_CONFIG)
    groot_checkpoint.save_checkpoint(model, tmp_path / "sharded", METADATA, groot_checkpoint.load_tokenizer(tokenizer_dir), max_shard_bytes=2_000_000)
    index = json.loads((tmp_path / "sharded" / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 1 and groot_checkpoint.LM_HEAD_KEY not in index["weight_map"]
    with safe_open(str(tmp_path / "sharded" / shards[0]), "pt") as handle:
        assert handle.metadata() == {"format": "pt"}  # what transformers' loader checks
    loaded = groot_checkpoint.load_model(tmp_path / "sharded", torch.float32)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value, rtol=0, atol=0)
    assert groot_checkpoint.load_metadata(tmp_path / "sharded").state["single_arm"]["min"].shape == (5,)

    groot_checkpoint.save_checkpoint(model, tmp_path / "single", METADATA)
    assert (tmp_path / "single" / "model.safetensors").is_file() and not (tmp_path / "single" / "tokenizer").exists()
    with pytest.raises(FileExistsError, match="not empty"):
        groot_checkpoint.save_checkpoint(model, tmp_path / "single", METADATA)
    with pytest.raises(KeyError):
        groot_checkpoint.save_checkpoint(model, tmp_path / "bad", {"new_embodiment": {"statistics": {}}})


def test_loading_prefers_the_tokenizer_inside_the_checkpoint(tmp_path, checkpoint_dir, tokenizer_dir):
    directory = shutil.copytree(checkpoint_dir, tmp_path / "with_tokenizer")
    groot_checkpoint.load_tokenizer(tokenizer_dir).save_pretrained(str(directory / "tokenizer"))
    assert groot_checkpoint.checkpoint_tokenizer(directory) == directory / "tokenizer"
    assert groot_checkpoint.checkpoint_tokenizer(checkpoint_dir) is None
    # No tokenizer given, or the default hub id (offline here: it would fail): the checkpoint's own is used.
    for tokenizer in (None, groot_checkpoint.DEFAULT_TOKENIZER):
        policy = GR00TPolicy.from_pretrained(directory, tokenizer=tokenizer, dtype="float32", device="cpu")
        assert policy.tokenizer.name_or_path == str(directory / "tokenizer")
    explicit = GR00TPolicy.from_pretrained(directory, tokenizer=tokenizer_dir, dtype="float32", device="cpu")
    assert explicit.tokenizer.name_or_path == str(tokenizer_dir)
    prompt = groot_policy.build_prompt("slide the paper", 2, 16)
    assert policy.tokenizer(prompt)["input_ids"] == explicit.tokenizer(prompt)["input_ids"]  # the saved copy tokenizes alike


# ----- finetune_groot.py -----------------------------------------------------------------------


def fixed_batch_loss(model, policy, dataset, steps=(0, 5, 11, 19), seed=3):
    """The eval-mode loss on fixed frames and fixed draws, inputs made by the inference path
    (GR00TPolicy.prepare_inputs) and the checkpoint's statistics: independent of the trainer's batching."""
    episodes = [(e, t) for e in range(2) for t in steps if t < len(dataset.states[e])]
    observation = {f"video.{c}": np.stack([dataset.frames[e][c][t][None] for e, t in episodes]) for c in GR00T_CAMERAS}
    observation |= {"state.single_arm": np.stack([dataset.states[e][t:t + 1, :5] for e, t in episodes]),
                    "state.gripper": np.stack([dataset.states[e][t:t + 1, 5:] for e, t in episodes]),
                    "annotation.human.task_description": [dataset.instructions[e][t] for e, t in episodes]}
    stats = {"single_arm": policy.metadata.action["single_arm"], "gripper": policy.metadata.action["gripper"]}
    actions, mask = np.zeros((len(episodes), 16, 32), np.float32), np.zeros((len(episodes), 16, 32), np.float32)
    for row, (e, t) in enumerate(episodes):
        chunk = dataset.actions[e][t:t + 16]
        actions[row, :len(chunk)] = finetune_groot.normalize(chunk, stats, 32)
        mask[row, :len(chunk), :6] = 1
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(actions.shape, generator=generator)
    t = torch.rand(len(episodes), generator=generator)
    with torch.no_grad():
        return model.eval()(**policy.prepare_inputs(observation), actions=torch.from_numpy(actions), action_mask=torch.from_numpy(mask),
                            image_token_id=policy.image_token_id, noise=noise, t=t).item()


def finetune_args(tmp_path, dataset_dir, **overrides):
    return finetune_groot.Args(**dict(dataset=[str(dataset_dir)], output_dir=str(tmp_path / "checkpoint"), run_dir=str(tmp_path / "runs"),
                                      max_steps=1, batch_size=8, torch_threads=1, log_every=1) | overrides)


def test_one_step_on_a_tiny_checkpoint_lowers_the_loss_and_the_groot_base_runs_it(tmp_path, dataset_dir, checkpoint_dir, tokenizer_dir, capsys):
    output = finetune_groot.main(finetune_args(tmp_path, dataset_dir, init_from=str(checkpoint_dir), tokenizer=str(tokenizer_dir),
                                               learning_rate=1e-2))
    printed = capsys.readouterr().out
    assert "step 1/1 | loss" in printed and "steps/s" in printed and "--groot-units" not in printed  # radians: inferred right

    # Isaac's layout: config.json, safetensors, metadata.json with the datasets' statistics; our provenance; the tokenizer.
    config = json.loads((output / "config.json").read_text())
    assert config["compute_dtype"] == "bfloat16" and config["backbone_cfg"]["tune_visual"] is False
    assert json.loads((output / finetune_groot.PROVENANCE_FILE).read_text())["step"] == 1
    metadata = json.loads((output / "experiment_cfg" / "metadata.json").read_text())["new_embodiment"]
    assert list(metadata["modalities"]["video"]) == list(GR00T_CAMERAS) and metadata["modalities"]["video"]["wrist"]["resolution"] == [IMAGE, IMAGE]
    frames = read_dataset(dataset_dir)  # radians: no unit conversion
    targets = np.concatenate([e["target"] for e in frames.episodes])
    np.testing.assert_allclose(metadata["statistics"]["action"]["single_arm"]["max"], targets[:, :5].max(0), rtol=1e-6)
    np.testing.assert_allclose(metadata["statistics"]["action"]["gripper"]["q01"], np.quantile(targets[:, 5:], 0.01, axis=0), rtol=1e-6)
    assert (output / "tokenizer" / "tokenizer_config.json").is_file()

    # The step changed the trained parts only, and lowered the loss on fixed frames and draws.
    before, after = groot_checkpoint.load_model(checkpoint_dir, torch.float32), groot_checkpoint.load_model(output, torch.float32)
    for key, value in before.state_dict().items():
        same = torch.equal(value, after.state_dict()[key])
        assert same == key.startswith("backbone."), key
    policy = GR00TPolicy.from_pretrained(output, dtype="float32", device="cpu")  # the checkpoint's own tokenizer: no network
    dataset = finetune_groot.load_dataset(dataset_dir, None)
    loss_before, loss_after = fixed_batch_loss(before, policy, dataset), fixed_batch_loss(after, policy, dataset)
    assert loss_after < loss_before - 0.005  # 1.632 -> 1.615 when written: one step at lr 1e-2 (Adam moves each weight ~lr)

    # The groot base loads it (no tokenizer given) and acts.
    base = make_base_policy("groot", 2, checkpoint=str(output), dtype="float32", device="cpu", seed=0)
    assert base.camera_map == {"front": "top_view", "wrist": "wrist"} and base.units == "radians"
    env = SO101PaperSquareEnv(image_size=64)
    states = np.stack([env.reset(seed=i)[0] for i in range(2)])
    images = {camera: np.stack([frame] * 2) for camera, frame in env.render_cameras().items()}
    base.reset()
    actions = base.act(states, images)
    assert actions.shape == (2, 6) and np.isfinite(actions).all() and np.abs(actions).max() <= 1


@pytest.fixture(scope="module")
def small_run(tmp_path_factory, dataset_dir):
    tmp_path = tmp_path_factory.mktemp("small")
    return finetune_groot.main(finetune_args(tmp_path, dataset_dir, batch_size=2, action_padding="repeat"))


def test_scratch_small_checkpoint_carries_its_tokenizer_and_runs_offline(small_run):
    config = json.loads((small_run / "config.json").read_text())
    assert config["backbone_cfg"]["vision_config"]["patch_size"] == 32 and config["action_head_cfg"]["max_state_dim"] == 64
    # Nothing is pretrained, so every part trained (fine-tuning would freeze the LLM and vision by default).
    assert json.loads((small_run / finetune_groot.PROVENANCE_FILE).read_text())["trained"] == dict.fromkeys(
        ["tune_llm", "tune_visual", "tune_projector", "tune_diffusion_model"], True)
    assert config["backbone_cfg"]["text_config"]["vocab_size"] == groot_checkpoint.BYTE_TOKENIZER_VOCAB_SIZE
    policy = GR00TPolicy.from_pretrained(small_run, dtype="float32", device="cpu", seed=0)
    assert policy.tokenizer.name_or_path == str(small_run / "tokenizer") and len(policy.tokenizer) == groot_checkpoint.BYTE_TOKENIZER_VOCAB_SIZE
    assert policy.model.tokens_per_image == 49
    rng = np.random.default_rng(0)
    observation = {f"video.{c}": rng.integers(0, 256, (3, 1, IMAGE, IMAGE, 3), dtype=np.uint8) for c in GR00T_CAMERAS}
    observation |= {"state.single_arm": rng.uniform(-0.5, 0.5, (3, 1, 5)), "state.gripper": rng.uniform(0, 1, (3, 1, 1))}
    actions = policy.get_action(observation)
    assert actions["action.single_arm"].shape == (3, 16, 5) and np.isfinite(actions["action.gripper"]).all()


def test_the_checkpoint_gives_the_groot_base_its_joint_units_and_dtype(tmp_path):
    # Degrees within +-100 (joints within +-0.5 rad here) read as LeRobot's "range" from the statistics alone;
    # the training record says degrees, and the small model's config says float32.
    dataset = write_dataset(tmp_path / "degrees", units="degrees")
    output = finetune_groot.main(finetune_args(tmp_path, dataset, batch_size=2))
    assert json.loads((output / groot_checkpoint.TRAINING_RECORD).read_text())["joint_units"] == "degrees"
    assert groot_checkpoint.load_metadata(output).joint_units == "degrees"
    metadata = groot_checkpoint.load_metadata(output)
    low = np.concatenate([metadata.state[k]["min"] for k in metadata.state])
    high = np.concatenate([metadata.state[k]["max"] for k in metadata.state])
    assert groot_joint_units(low, high) == "range"  # what the statistics alone would have said
    base = make_base_policy("groot", 1, checkpoint=str(output), device="cpu", seed=0)
    assert base.units == "degrees"
    assert {p.dtype for p in base.model.model.parameters()} == {torch.float32}
    with pytest.raises(ValueError, match="bfloat16 or float32"):
        make_base_policy("groot", 1, checkpoint=str(output), device="cpu", dtype="float16")


def test_output_directory_rules(tmp_path, dataset_dir, small_run):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(SystemExit, match="holds no checkpoint of finetune_groot.py"):
        finetune_groot.main(finetune_args(tmp_path, dataset_dir, output_dir=str(foreign), init_from="/nonexistent"))
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]  # refused before anything else was read

    previous = small_run.parent / "previous"
    previous.mkdir()
    for item in small_run.iterdir():  # a copy of an earlier checkpoint of the script
        (previous / item.name).symlink_to(item)
    with pytest.raises(SystemExit, match="--overwrite"):
        finetune_groot.main(finetune_args(tmp_path, dataset_dir, output_dir=str(previous)))
    output = finetune_groot.main(finetune_args(tmp_path, dataset_dir, output_dir=str(previous), overwrite=True, batch_size=2))
    assert not any(p.is_symlink() for p in output.iterdir())  # replaced as a whole
    empty = tmp_path / "empty"
    empty.mkdir()
    assert (finetune_groot.main(finetune_args(tmp_path, dataset_dir, output_dir=str(empty), batch_size=2)) / "config.json").is_file()
    assert sorted(p.name for p in output.parent.iterdir() if ".tmp-" in p.name or ".old-" in p.name) == []

    # A failed write leaves the previous checkpoint as it was, and no staging directory.
    def failing(directory):
        directory.mkdir()
        raise OSError("disk full")

    stamp = (output / finetune_groot.PROVENANCE_FILE).read_text()
    with pytest.raises(OSError, match="disk full"):
        finetune_groot.publish_checkpoint(failing, output)
    assert (output / finetune_groot.PROVENANCE_FILE).read_text() == stamp
    assert not any(".tmp-" in p.name for p in output.parent.iterdir())


def test_datasets_mix_into_one_set_of_statistics_and_other_layouts_are_refused(tmp_path, dataset_dir):
    other = write_dataset(tmp_path / "other", lengths=(8,), seed=1)
    datasets = [finetune_groot.load_dataset(root, None) for root in (dataset_dir, other)]
    stats = finetune_groot.build_metadata(datasets, "new_embodiment")["new_embodiment"]["statistics"]
    every = np.concatenate([a for d in datasets for a in d.actions])
    assert len(every) == sum(EPISODE_LENGTHS) + 8
    np.testing.assert_allclose(stats["action"]["single_arm"]["min"], every[:, :5].min(0))
    np.testing.assert_allclose(stats["state"]["gripper"]["mean"], np.concatenate([s for d in datasets for s in d.states])[:, 5:].mean(0))
    assert datasets[0].instructions[0][0] == "Slide the sheet of paper into the red tape square."

    one_camera = write_dataset(tmp_path / "one_camera", lengths=(8,), cameras=("top_view",))
    with pytest.raises(SystemExit, match="differ in their groups or cameras"):
        finetune_groot.main(finetune_args(tmp_path, dataset_dir, dataset=[str(dataset_dir), str(one_camera)]))
    state_only = tmp_path / "state_only"
    writer = DatasetWriter(state_only, "radians", 0.02, {})
    writer.add_episode(np.zeros((4, 25)), np.zeros((4, 6)), np.zeros(4), True)
    writer.close()
    with pytest.raises(ValueError, match="no meta/modality.json.*no video feature.*record with --cameras"):
        finetune_groot.load_dataset(state_only, None)


def test_a_lerobot_v3_0_dataset_without_modality_json_reads_as_its_v2_1_twin(tmp_path, dataset_dir):
    """A LeRobot >= 0.4 recording is v3.0 and has no Isaac modality.json: GR00T's keys come from its features
    (the SO-100/SO-101 groups, every camera), and the episodes, instructions and frames are the v2.1 twin's."""
    twin = write_dataset(tmp_path / "v3", version="v3.0")  # the same seed: the same episodes as dataset_dir
    (twin / "meta/modality.json").unlink()
    old, new = finetune_groot.load_dataset(dataset_dir, None), finetune_groot.load_dataset(twin, None)
    assert new.cameras == old.cameras == {"front": "observation.images.top_view", "wrist": "observation.images.wrist"}
    assert (new.state_groups, new.action_groups, new.resolution, new.units) == (old.state_groups, old.action_groups, old.resolution, "radians")
    assert new.instructions == old.instructions
    for name in ("states", "actions"):
        for a, b in zip(getattr(old, name), getattr(new, name), strict=True):
            np.testing.assert_array_equal(a, b)
    for a, b in zip(old.frames, new.frames, strict=True):
        assert all(np.array_equal(a[camera], b[camera]) for camera in a)


def test_datasets_that_name_the_top_camera_top_view_still_train_alone_and_mixed_with_new_ones(tmp_path, dataset_dir):
    """record_demos.py used to call observation.images.top_view `top_view` in modality.json, not `front`. Such a
    dataset mixes with new ones (the same video feature), the checkpoint takes the first dataset's names, and a
    checkpoint that says top_view (like the committed one) sees the sim's top_view, as one that says front does."""
    older = write_dataset(tmp_path / "older", lengths=(8,), seed=2)
    edit_json(older / "meta/modality.json", lambda m: m.update(video={"top_view": m["video"]["front"], "wrist": m["video"]["wrist"]}))
    output = finetune_groot.main(finetune_args(tmp_path, older, dataset=[str(older), str(dataset_dir)]))
    cameras = list(groot_checkpoint.load_metadata(output).video)
    assert cameras == ["top_view", "wrist"]
    committed = list(groot_checkpoint.load_metadata(ROOT / "checkpoints" / "groot_n15_small_so101_sim").video)
    for names in (cameras, committed):
        assert default_camera_map(names) == {"top_view": "top_view", "wrist": "wrist"}
    assert default_camera_map(list(GR00T_CAMERAS)) == {"front": "top_view", "wrist": "wrist"}

    swapped = write_dataset(tmp_path / "swapped", lengths=(8,), seed=3)  # the same names, the other way round
    edit_json(swapped / "meta/modality.json", lambda m: m.update(video={"front": m["video"]["wrist"], "wrist": m["video"]["front"]}))
    with pytest.raises(SystemExit, match="differ in their groups or cameras"):
        finetune_groot.main(finetune_args(tmp_path / "swapped_run", older, dataset=[str(older), str(swapped)]))


def test_learning_rate_warms_up_then_decays_by_cosine():
    args = finetune_groot.Args(max_steps=100, warmup_ratio=0.05, learning_rate=1e-4)
    rates = [finetune_groot.learning_rate(step / 100, args) for step in range(100)]
    assert rates[0] == pytest.approx(2e-5) and rates[4] == pytest.approx(1e-4) and rates[5] == pytest.approx(1e-4)
    assert rates[5 + 95 // 2] == pytest.approx(1e-4 * 0.5 * (1 + math.cos(math.pi * 47 / 95)))
    assert all(a >= b for a, b in itertools.pairwise(rates[5:])) and 0 < rates[-1] < 1e-6
    assert finetune_groot.learning_rate(0.0, finetune_groot.Args(max_steps=1)) == finetune_groot.Args().learning_rate


def test_max_minutes_stops_training_on_time_and_runs_the_schedule_to_its_end(tmp_path, dataset_dir, capsys):
    args = finetune_groot.Args(dataset=[str(dataset_dir)], output_dir=str(tmp_path / "checkpoint"), run_dir=str(tmp_path / "runs"),
                               max_steps=1_000_000, max_minutes=0.1, batch_size=2, log_every=1, torch_threads=1)
    finetune_groot.main(args)
    provenance = json.loads((tmp_path / "checkpoint" / finetune_groot.PROVENANCE_FILE).read_text())
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("step ")]
    assert 3 <= provenance["step"] < 1_000_000 and len(lines) == provenance["step"]
    rates = [float(line.split("| lr ")[1].split()[0]) for line in lines]
    # The schedule follows the clock: it starts near 0, warms up, and has decayed by the time the budget is spent.
    assert rates[0] < 0.01 * args.learning_rate and max(rates) > 2 * rates[-1] and rates[-1] < 0.25 * args.learning_rate


def test_bad_arguments_are_refused():
    for overrides, message in [({"action_padding": "zeros"}, "--action-padding"), ({"batch_size": 0}, "--batch-size"),
                               ({"learning_rate": float("nan")}, "--learning-rate"), ({"embodiment_tag": "robot"}, "--embodiment-tag"),
                               ({"tune_diffusion_model": False}, "scratch-small trains every part"),
                               ({"seed": -1}, r"--seed must be within \[0, 4294967295\]"),
                               ({"batch_size": 10**5}, r"--batch-size must be within \[1, 4096\]")]:
        with pytest.raises(SystemExit, match=message):
            finetune_groot.main(finetune_groot.Args(**overrides))


def modality(change):
    return lambda root: edit_json(root / "meta/modality.json", change)


def info(change):
    return lambda root: edit_json(root / "meta/info.json", change)


DAMAGED_DATASETS = {
    # meta/modality.json that does not fit info.json's features
    "a group past the end": (modality(lambda m: m["action"]["gripper"].update(end=7)),
                             r"modality.json: action.gripper is \[5, 7\) of action, which holds 6 values"),
    "a negative start": (modality(lambda m: m["state"]["single_arm"].update(start=-1)), r"state.single_arm is \[-1, 5\)"),
    "an empty group": (modality(lambda m: m["state"]["gripper"].update(start=6)), r"state.gripper is \[6, 6\)"),
    "overlapping groups": (modality(lambda m: m["action"]["gripper"].update(start=4)),
                           "action.gripper and action.single_arm overlap in action"),
    "no action group": (modality(lambda m: m.update(action={})), "modality.json: it names no action group"),
    "a camera that is no video": (modality(lambda m: m["video"]["wrist"].update(original_key="observation.state")),
                                  "video.wrist reads 'observation.state', which info.json declares no video feature for"),
    # meta/info.json that does not fit the data, or declares sizes past the limits
    "a state wider than stored": (lambda root: (info(lambda i: i["features"]["observation.state"].update(shape=[7]))(root),
                                                modality(lambda m: m["state"]["gripper"].update(end=7))(root)),
                                  r"column 'observation.state' holds 6 values per frame, but info.json declares shape \[7\]"),
    "a camera larger than stored": (info(lambda i: i["features"]["observation.images.wrist"].update(shape=[64, 64, 3])),
                                    "observation.images.wrist video is 32 x 32 pixels, but info.json declares 64 x 64"),
    "a huge camera": (info(lambda i: i["features"]["observation.images.wrist"].update(shape=[10**6, 10**6, 3])),
                      r"has shape \[1000000, 1000000, 3\], not \[height, width, channels\] of at most 4096 each"),
    "a negative fps": (info(lambda i: i.update(fps=-30)), r"fps is -30, not a number within \(0, 1000\]"),
    # values and files that cannot be read
    "a NaN action": (lambda root: set_value(root / "data/chunk-000/episode_000001.parquet", "action", 3, np.nan),
                     "column 'action' holds NaN or infinite values, first in episode 1, frame 3"),
    "modality.json not JSON": (lambda root: (root / "meta/modality.json").write_text("{"), "modality.json cannot be read as JSON"),
    "tasks.jsonl not JSON lines": (lambda root: (root / "meta/tasks.jsonl").write_text("task 0\n"), "tasks.jsonl, line 1, is not a task entry"),
    "a video that is no video": (lambda root: (root / "videos/chunk-000/observation.images.wrist/episode_000001.mp4").write_text("x"),
                                 "cannot decode video .*wrist/episode_000001.mp4"),
}


@pytest.mark.parametrize("damage, message", DAMAGED_DATASETS.values(), ids=DAMAGED_DATASETS.keys())
def test_a_damaged_dataset_is_refused_in_one_line_before_training(tmp_path, dataset_dir, damage, message):
    damaged = shutil.copytree(dataset_dir, tmp_path / "damaged")
    damage(damaged)
    with pytest.raises(SystemExit, match=message) as exit_:
        finetune_groot.main(finetune_args(tmp_path, damaged))
    assert exit_.value.code == 2 and "\n" not in str(exit_.value)
    assert not (tmp_path / "runs").exists() and not (tmp_path / "checkpoint").exists()


def test_an_output_directory_that_is_a_mount_point_is_refused_before_training(tmp_path, dataset_dir, monkeypatch):
    mount = tmp_path / "usb"
    mount.mkdir()
    pretend_mount_point(monkeypatch, mount)
    with pytest.raises(SystemExit, match="usb is a mount point .*write into a new directory inside it") as exit_:
        finetune_groot.main(finetune_args(tmp_path, dataset_dir, output_dir=str(mount)))
    assert exit_.value.code == 2 and not (tmp_path / "runs").exists() and not any(mount.iterdir())


def test_sigterm_writes_the_checkpoint_of_the_steps_done_and_exits_143(tmp_path, dataset_dir):
    command = [sys.executable, "finetune_groot.py", "--dataset", str(dataset_dir), "--output-dir", str(tmp_path / "checkpoint"),
               "--run-dir", str(tmp_path / "runs"), "--max-steps", "100000", "--batch-size", "2", "--log-every", "1",
               "--torch-threads", "1"]
    process = subprocess.Popen(command, cwd=pathlib.Path(finetune_groot.__file__).parent, stdout=subprocess.PIPE, text=True)
    for line in process.stdout:
        if line.startswith("step 2/"):
            break
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 143, output
    provenance = json.loads((tmp_path / "checkpoint" / finetune_groot.PROVENANCE_FILE).read_text())
    assert 2 <= provenance["step"] < 100000 and "interrupted" in output


def test_small_model_scales_the_per_embodiment_layers_by_their_fan_in():
    torch.manual_seed(0)
    model = finetune_groot.small_model()
    layers = [m for m in model.modules() if isinstance(m, groot_model.CategorySpecificLinear)]
    assert len(layers) >= 6  # state encoder, action encoder, action decoder: two or three layers each
    for layer in layers:
        fan_in = layer.W.shape[1]
        assert abs(layer.W.std().item() * fan_in ** 0.5 - 1) < 0.05, fan_in
    assert model.action_head.future_tokens.weight.std().item() == pytest.approx(0.02, rel=0.1)
