"""The groot base policy, ppo_residual_groot.py and eval_policy.py on a tiny random GR00T checkpoint.

No network and no GPU: checkpoints and tokenizer come from groot_fixtures.py, servers listen on
127.0.0.1 only.
"""

import dataclasses
import gc
import json
import pathlib
import shutil
import socket
import threading
import time

import numpy as np
import pytest
import torch
import tyro

import eval_policy
import ppo_residual_groot as ppo
import ppo_residual_jacobian
from base_policies import camera_images, make_base_policy
from groot_fixtures import (  # noqa: F401 (fixtures: checkpoint_dir, tokenizer_dir, one_torch_thread)
    checkpoint_dir, one_torch_thread, short_episodes, stats, tokenizer_dir, write_checkpoint,
)
from groot_base import GrootOptions, _resize_frames
from groot_model import GR00TN15
from groot_server import GR00TServer
from joint_units import groot_joint_units, units_to_radians
from so101_env import SO101PaperSquareEnv

NUM_ENVS = 3
ROOT = pathlib.Path(__file__).resolve().parent.parent


def local_base(checkpoint, tokenizer, num_envs=NUM_ENVS, **kwargs):
    return make_base_policy("groot", num_envs, checkpoint=str(checkpoint), tokenizer=str(tokenizer),
                            dtype="float32", device="cpu", seed=0, **kwargs)


@pytest.fixture(scope="module")
def base(checkpoint_dir, tokenizer_dir):
    return local_base(checkpoint_dir, tokenizer_dir)


def record_calls(base):
    """Wrap the backend's get_action so each call's observation and reply are kept."""
    calls, get_action = [], base.model.get_action

    def recording(observation):
        actions = get_action(observation)
        calls.append((observation, actions))
        return actions

    base.model.get_action = recording
    return calls


def start_states(num_envs=NUM_ENVS):
    env = SO101PaperSquareEnv()
    return np.stack([env.reset(seed=i)[0] for i in range(num_envs)])


def random_images(num_envs=NUM_ENVS, size=64, seed=0):
    rng = np.random.default_rng(seed)
    return {camera: rng.integers(0, 256, (num_envs, size, size, 3), dtype=np.uint8) for camera in ("top_view", "wrist")}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ----- the chunked, batched base -------------------------------------------------------------


def test_one_batched_call_per_chunk_and_deltas_toward_the_targets(base):
    calls = record_calls(base)
    states, images = start_states(), random_images()
    base.reset()
    assert base.images_needed().all()
    actions = [base.act(states, images)]
    for _ in range(base.chunk_steps - 1):
        assert not base.images_needed().any()
        actions.append(base.act(states))  # mid-chunk: no images, no model call
    assert len(calls) == 1
    observation, reply = calls[0]
    assert observation["video.front"].shape == (NUM_ENVS, 1, 72, 96, 3)  # resized to the training resolution
    assert observation["state.single_arm"].shape == (NUM_ENVS, 1, 5) and observation["state.gripper"].shape == (NUM_ENVS, 1, 1)
    assert observation["annotation.human.task_description"] == [[base.instruction]] * NUM_ENVS

    # Radians checkpoint: the targets are the model's actions; each step moves toward the chunk's next one.
    targets = np.concatenate([reply["action.single_arm"], reply["action.gripper"]], axis=-1)
    for step, action in enumerate(actions):
        assert action.shape == (NUM_ENVS, 6) and action.dtype == np.float32
        expected = np.clip((targets[:, step] - states[:, :6]) / base.act_scale, -1, 1)
        np.testing.assert_allclose(action, expected, atol=1e-4)
    assert 0 < np.abs(np.stack(actions)).max() <= 1

    assert base.images_needed().all()
    base.act(states, images)
    assert len(calls) == 2 and base.inference_batch_sizes[-2:] == [NUM_ENVS, NUM_ENVS]
    assert base.last_inference_seconds == base.inference_seconds[-1] > 0


def test_a_reset_env_gets_a_new_chunk_alone(base):
    calls = record_calls(base)
    states, images = start_states(), random_images()
    base.reset()
    base.act(states, images)
    base.act(states)
    base.reset(np.array([False, True, False]))
    np.testing.assert_array_equal(base.images_needed(), [False, True, False])
    with pytest.raises(ValueError, match=r"camera images of envs \[1\]"):
        base.act(states)
    base.act(states, images)
    assert [observation["state.single_arm"].shape[0] for observation, _ in calls] == [NUM_ENVS, 1]
    np.testing.assert_array_equal(calls[1][0]["video.wrist"][:, 0], _resize_frames(images["wrist"][1:2], 96, 72))


def test_one_model_serves_any_number_of_envs(base, checkpoint_dir, tokenizer_dir):
    def models_alive():
        gc.collect()
        return sum(type(o) is GR00TN15 for o in gc.get_objects())

    before = models_alive()
    many = local_base(checkpoint_dir, tokenizer_dir, num_envs=16)
    shared = make_base_policy("groot", 1, model=many.model, checkpoint=str(checkpoint_dir))
    assert models_alive() == before + 1  # 16 envs and a second base: still one more model
    assert many.queue.chunks.nbytes == 16 * many.chunk_steps * 6 * 4  # per-env memory is the chunk only
    calls = record_calls(many)
    many.act(start_states(16), random_images(16, size=32))
    assert len(calls) == 1 and calls[0][0]["state.single_arm"].shape[0] == 16
    assert shared.act(start_states(1), random_images(1)).shape == (1, 6)


def test_cameras_are_rendered_only_when_a_chunk_is_needed(base):
    renders = []

    def render():
        renders.append(1)
        return [{"top_view": image[i], "wrist": image[i]} for i in range(NUM_ENVS)]

    image = random_images()["top_view"]
    states = start_states()
    base.reset()
    for _ in range(2 * base.chunk_steps):
        base.act(states, camera_images(base, render))
    assert len(renders) == 2
    jacobian = make_base_policy("jacobian", 1)
    jacobian.act(states[:1], camera_images(jacobian, render))
    assert len(renders) == 2


# ----- mapping and units ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "low, high, units",
    [
        ([-1.9, -1.7, -1.6, -1.6, -2.7, -0.2], [1.9, 1.7, 1.6, 1.6, 2.7, 1.7], "radians"),
        ([-110, -100, -97, -95, -157, 0], [110, 100, 97, 95, 157, 100], "degrees"),
        ([-98, -100, -95, -99, -60, 0], [97, 100, 96, 99, 60, 100], "range"),
        ([-40, -30, -35, -20, -10, 0], [40, 30, 35, 20, 10, 45], "range"),  # ambiguous: LeRobot's old default
    ],
)
def test_units_are_decided_from_the_statistics(low, high, units):
    assert groot_joint_units(np.array(low, float), np.array(high, float)) == units


PHOSPHO_RANGE_STATS = stats([-98, -100, -95, -99, -60, 0], [97, 100, 96, 99, 60, 100])
PHOSPHO_METADATA = {"new_embodiment": {
    "statistics": {"state": {"arm_0": PHOSPHO_RANGE_STATS}, "action": {"arm_0": PHOSPHO_RANGE_STATS}},
    "modalities": {
        "video": {name: {"resolution": [224, 224], "channels": 3, "fps": 30.0} for name in ("image_cam_0", "image_cam_1")},
        "state": {"arm_0": {"absolute": True, "rotation_type": None, "shape": [6], "continuous": True}},
        "action": {"arm_0": {"absolute": True, "rotation_type": None, "shape": [6], "continuous": True}},
    },
    "embodiment_tag": "new_embodiment",
}}


def test_phospho_style_keys_and_lerobot_range_units(tmp_path, tokenizer_dir):
    checkpoint = write_checkpoint(tmp_path / "phospho", metadata=PHOSPHO_METADATA)
    base = local_base(checkpoint, tokenizer_dir, num_envs=2)
    assert base.camera_map == {"image_cam_0": "top_view", "image_cam_1": "wrist"}
    assert base.state_keys == base.action_keys == ["arm_0"] and base.units == "range"
    calls = record_calls(base)
    states = start_states(2)
    action = base.act(states, random_images(2))
    observation, reply = calls[0]
    # Home pose in LeRobot's range: arm joints inside [-100, 100], gripper inside [0, 100].
    assert np.abs(observation["state.arm_0"]).max() <= 100 and observation["state.arm_0"][:, 0, 5].min() >= 0
    np.testing.assert_allclose(units_to_radians(observation["state.arm_0"][:, 0].astype(float), "range"), states[:, :6], atol=1e-5)
    targets = units_to_radians(reply["action.arm_0"][:, 0].astype(float), "range")
    np.testing.assert_allclose(action, np.clip((targets - states[:, :6]) / base.act_scale, -1, 1), atol=1e-4)


def test_overrides_and_their_errors(checkpoint_dir, tokenizer_dir, base):
    swapped = make_base_policy("groot", 1, model=base.model, checkpoint=str(checkpoint_dir),
                               camera_map={"front": "wrist", "wrist": "top_view"}, units="degrees", chunk_steps=8)
    assert swapped.camera_map == {"front": "wrist", "wrist": "top_view"} and swapped.units == "degrees"
    assert swapped.config()["camera_map"] == swapped.camera_map and swapped.config()["chunk_steps"] == 8
    with pytest.raises(ValueError, match=r"camera_map .* missing \['wrist'\]"):
        make_base_policy("groot", 1, model=base.model, camera_map={"front": "top_view"})
    with pytest.raises(ValueError, match=r"wrong entries \{'front': 'side'\}"):
        make_base_policy("groot", 1, model=base.model, camera_map={"front": "side", "wrist": "wrist"})
    with pytest.raises(ValueError, match=r"state_keys=\['single_arm'\] must name all of them.*missing \['gripper'\]"):
        make_base_policy("groot", 1, model=base.model, state_keys=["single_arm"])
    with pytest.raises(ValueError, match=r"action_keys=\['arm'\].*unknown \['arm'\]"):
        make_base_policy("groot", 1, model=base.model, action_keys=["arm"])
    with pytest.raises(ValueError, match="unknown joint units 'furlongs'"):
        make_base_policy("groot", 1, model=base.model, units="furlongs")
    with pytest.raises(ValueError, match=r"chunk_steps must be within \[1, 16\]"):
        make_base_policy("groot", 1, model=base.model, chunk_steps=17)
    with pytest.raises(ValueError, match="unknown GR00T backend 'grpc'.*'local'.*'server'"):
        make_base_policy("groot", 1, backend="grpc")


def test_checkpoint_without_metadata_is_a_clear_error(tmp_path, tokenizer_dir):
    checkpoint = write_checkpoint(tmp_path / "ckpt")
    (checkpoint / "experiment_cfg" / "metadata.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"metadata\.json is missing"):
        local_base(checkpoint, tokenizer_dir)


# ----- server backend ------------------------------------------------------------------------


class IsaacLikePolicy:
    """What an Isaac-GR00T server exposes: actions and modality config, no statistics endpoint."""

    def __init__(self, policy):
        self.get_action, self.modality_config = policy.get_action, policy.modality_config


@pytest.mark.parametrize("server_policy", ["ours", "isaac_like"])
def test_server_backend_matches_the_local_one(server_policy, base, checkpoint_dir):
    policy = base.model if server_policy == "ours" else IsaacLikePolicy(base.model)
    server = GR00TServer(policy, host="127.0.0.1", port=0)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    # Without a get_metadata endpoint the mapping comes from the checkpoint's metadata.json.
    remote = make_base_policy("groot", NUM_ENVS, backend="server", host="127.0.0.1", port=server.port,
                              timeout_s=10, checkpoint=str(checkpoint_dir))
    try:
        for setting in ("camera_map", "state_keys", "action_keys", "units", "image_sizes", "language_key"):
            assert getattr(remote, setting) == getattr(base, setting), setting
        states, images = start_states(), random_images()
        base.reset()
        remote.reset()
        base.model.generator.manual_seed(4)
        local_actions = [base.act(states, images), base.act(states)]
        base.model.generator.manual_seed(4)
        remote_actions = [remote.act(states, images), remote.act(states)]
        np.testing.assert_array_equal(np.stack(remote_actions), np.stack(local_actions))
        assert remote.inference_batch_sizes == [NUM_ENVS]
    finally:
        remote.model.kill()
        thread.join(timeout=5)
        remote.model.close()


def test_unreachable_server_fails_fast_with_a_clear_error(checkpoint_dir):
    port = free_port()
    start = time.monotonic()
    with pytest.raises(TimeoutError, match=rf"no reply from the GR00T server at 127\.0\.0\.1:{port}"):
        make_base_policy("groot", 1, backend="server", host="127.0.0.1", port=port, timeout_s=0.5, checkpoint=str(checkpoint_dir))
    assert time.monotonic() - start < 3
    server = GrootOptions(model=str(checkpoint_dir), backend="server", host="127.0.0.1", port=port, timeout=0.5)
    args = eval_policy.Args(base_policy="groot", groot=server, n_episodes=1)
    with pytest.raises(SystemExit, match="cannot evaluate: no reply from the GR00T server"):
        eval_policy.main(args)


# ----- training script and evaluation ---------------------------------------------------------


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, checkpoint_dir, tokenizer_dir, short_episodes):
    args = ppo.Args(
        run_dir=str(tmp_path_factory.mktemp("runs")), seed=3, device="cpu", num_envs=2, num_steps=16,
        groot=dataclasses.replace(ppo.Args().groot, model=str(checkpoint_dir), tokenizer=str(tokenizer_dir), dtype="float32"),
        total_timesteps=64, num_minibatches=2, update_epochs=1, async_envs=False, critic_warmup_iterations=1,
        eval_every=2, eval_episodes=1, hidden_size=32,
    )
    return ppo.main(args)


def test_training_writes_checkpoints_groot_scalars_and_video(trained_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    final = ppo.load_checkpoint(trained_run / "checkpoints" / "final.pt", base_policy="groot")
    assert final["trainer"] == "ppo_residual_groot.py" and final["iteration"] == 2 and final["global_step"] == 64
    assert final["base_config"]["name"] == "groot" and final["base_config"]["chunk_steps"] == 16  # the whole chunk
    assert final["base_config"]["noise"] == "zero"  # the training default: a deterministic base
    assert len(list((trained_run / "videos").glob("*.mp4"))) == 1
    events = EventAccumulator(str(trained_run), size_guidance={"images": 0})
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    assert {"groot/inference_time", "groot/batch_size", "charts/SPS", "residual/penalty", "eval/success_rate"} <= scalars
    # 16 steps per env and iteration, the whole 16-step chunk, both envs in step: one call of two envs.
    assert [e.value for e in events.Scalars("groot/batch_size")] == [2.0, 2.0]
    assert [e.value for e in events.Scalars("groot/calls")] == [1.0, 1.0]


def test_resume_keeps_the_groot_settings(trained_run, short_episodes, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(trained_run, copy)
    halfway = torch.load(copy / "checkpoints" / "final.pt", weights_only=False)
    halfway.update(iteration=1, global_step=32, run_dir=str(copy))
    torch.save(halfway, copy / "checkpoints" / "halfway.pt")
    ppo.main(ppo.Args(resume=str(copy / "checkpoints" / "halfway.pt")))
    final = ppo.load_checkpoint(copy / "checkpoints" / "final.pt")
    assert final["iteration"] == 2 and final["global_step"] == 64
    assert final["base_config"] == halfway["base_config"]


def test_eval_policy_on_a_groot_residual_checkpoint_with_compare_base(trained_run, short_episodes, tmp_path):
    out = tmp_path / "eval" / "groot.json"
    args = eval_policy.Args(
        model_path=str(trained_run / "checkpoints" / "final.pt"), compare_base=True, n_episodes=1, seed=5,
        output_json=str(out), save_video=True, n_videos=1, video_size=48, device="cpu",
    )
    summaries = eval_policy.main(args)
    assert [s["policy"] for s in summaries] == ["residual+groot", "groot"]
    assert [p["policy"] for p in json.loads(out.read_text())["policies"]] == ["residual+groot", "groot"]
    videos = sorted(p.name for p in (tmp_path / "eval" / "videos").glob("*.mp4"))
    assert videos == ["groot_seed5.mp4", "residual+groot_seed5.mp4"]


def test_eval_policy_on_the_groot_base_alone(checkpoint_dir, tokenizer_dir, short_episodes):
    groot = GrootOptions(model=str(checkpoint_dir), tokenizer=str(tokenizer_dir), dtype="float32", chunk_steps=16)
    args = eval_policy.Args(base_policy="groot", groot=groot, device="cpu", n_episodes=2)
    summary, = eval_policy.main(args)
    assert summary["policy"] == "groot" and summary["mean_episode_length"] == 40


def test_the_scripts_reject_bad_groot_options():
    with pytest.raises(SystemExit, match=r"--groot.chunk-steps must be within \[1, 16\]"):
        ppo.validate_args(ppo.Args(groot=GrootOptions(chunk_steps=0)))
    with pytest.raises(SystemExit, match=r"--groot.chunk-steps must be within \[1, 16\]"):
        eval_policy.check_args(eval_policy.Args(base_policy="groot", groot=GrootOptions(chunk_steps=17)))
    with pytest.raises(SystemExit, match=r"--groot.port must be within \[1, 65535\]"):
        ppo.validate_args(ppo.Args(groot=GrootOptions(port=70000)))
    # Options with a fixed set of values are the parser's to check (typing.Literal), with exit status 2.
    for parse, flags in [(ppo.Args, ["--groot.backend", "http"]), (eval_policy.Args, ["--groot.noise", "mean"]),
                         (eval_policy.Args, ["--groot.units", "furlongs"]),
                         (ppo_residual_jacobian.Args, ["--base-policy", "groot"])]:  # GR00T: ppo_residual_groot.py
        with pytest.raises(SystemExit) as exit_:
            tyro.cli(parse, args=flags)
        assert exit_.value.code == 2, flags


def test_server_backend_sends_the_token_from_the_environment(base, checkpoint_dir, monkeypatch):
    server = GR00TServer(base.model, host="127.0.0.1", port=0, api_token="s3cret")
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    options = dict(backend="server", host="127.0.0.1", port=server.port, timeout_s=10, checkpoint=str(checkpoint_dir))
    try:
        monkeypatch.delenv("GROOT_API_TOKEN", raising=False)
        with pytest.raises(RuntimeError, match="Unauthorized"):
            make_base_policy("groot", 1, **options).act(start_states(1), random_images(1))
        monkeypatch.setenv("GROOT_API_TOKEN", "s3cret")
        remote = make_base_policy("groot", 1, **options)
        assert remote.act(start_states(1), random_images(1)).shape == (1, 6)
        assert "s3cret" not in json.dumps(remote.config())  # the token never reaches a checkpoint
    finally:
        remote.model.kill()
        thread.join(timeout=5)
        remote.model.close()


def test_a_reset_env_comes_back_in_step_so_batches_stay_full(base):
    calls = record_calls(base)
    states, images = start_states(), random_images()
    base.reset()
    base.act(states, images)  # step 0: one call for every env
    base.act(states)
    base.reset(np.array([False, True, False]))
    base.act(states, images)  # step 2: env 1 alone, with a chunk that runs out at the next boundary
    for _ in range(3, base.chunk_steps):
        assert not base.images_needed().any()
        base.act(states)
    assert base.images_needed().all()  # step chunk_steps: every env needs a chunk again, together
    base.act(states, images)
    assert [observation["state.single_arm"].shape[0] for observation, _ in calls] == [NUM_ENVS, 1, NUM_ENVS]


def test_kept_corrections_shift_the_rest_of_the_chunk_only(base, checkpoint_dir):
    keeping = make_base_policy("groot", NUM_ENVS, model=base.model, checkpoint=str(checkpoint_dir), keep_corrections=True)
    calls = record_calls(keeping)
    states, images = start_states(), random_images()
    keeping.reset()
    first = keeping.act(states, images)
    correction = np.array([0.1, -0.2, 0.0, 0.0, 0.3, 0.0], dtype=np.float32)
    keeping.executed(first + correction)  # what base + alpha * residual added
    keeping.executed(keeping.act(states))  # a step that adds nothing shifts nothing further
    targets = np.concatenate([calls[0][1]["action.single_arm"], calls[0][1]["action.gripper"]], axis=-1)
    for step in range(2, keeping.chunk_steps):
        expected = np.clip((targets[:, step] - states[:, :6]) / keeping.act_scale + correction, -1, 1)
        np.testing.assert_allclose(keeping.act(states), expected, atol=1e-4)
    keeping.act(states, images)  # the next chunk is GR00T's own again
    targets = np.concatenate([calls[1][1]["action.single_arm"], calls[1][1]["action.gripper"]], axis=-1)
    np.testing.assert_allclose(keeping.last_actions, np.clip((targets[:, 0] - states[:, :6]) / keeping.act_scale, -1, 1),
                               atol=1e-4)
    assert keeping.config()["keep_corrections"] and not base.config()["keep_corrections"]
    calls = record_calls(base)
    base.reset()
    before = base.act(states, images)
    base.executed(before + correction)  # off by default: the next step steers back to the target
    targets = np.concatenate([calls[0][1]["action.single_arm"], calls[0][1]["action.gripper"]], axis=-1)
    np.testing.assert_allclose(base.act(states), np.clip((targets[:, 1] - states[:, :6]) / base.act_scale, -1, 1), atol=1e-4)


def test_an_interrupted_run_closes_envs_whose_workers_are_gone():
    """A SIGTERM to the whole process group (`pkill -f`) ends the env workers before the trainer
    closes them; after saving its checkpoint the trainer must still exit cleanly."""
    import gymnasium as gym

    args = ppo.Args()
    envs = gym.vector.AsyncVectorEnv([ppo.make_env(args, 0.08)] * 2)
    collector = ppo.RolloutCollector(args, envs, None, None, None, slice(0, 2), seed=0)
    envs.processes[0].terminate()
    envs.processes[0].join()
    collector.close(interrupted=True)
    assert not any(process.is_alive() for process in envs.processes)


def test_the_il_queue_keeps_whole_chunks_after_a_reset():
    from action_chunks import ActionChunkQueue

    queue = ActionChunkQueue(2, chunk_steps=4)
    queue.load(np.array([True, True]), np.zeros((2, 4, 6)))
    queue.pop()
    queue.reset(np.array([False, True]))
    queue.load(np.array([False, True]), np.zeros((1, 4, 6)))
    for _ in range(3):
        queue.pop()
    np.testing.assert_array_equal(queue.needs_chunk(), [True, False])  # env 1 runs its 4 steps in full


def test_the_committed_groot_residual_replays_an_episode_exactly_on_its_deterministic_base(monkeypatch):
    from checkpoint_io import load_actor_program
    from episodes import run_episode

    monkeypatch.chdir(ROOT)  # the checkpoint names its base by the path the README's commands use
    path = "checkpoints/residual_groot_small_so101_sim.pt"
    checkpoint = ppo.load_checkpoint(path, base_policy="groot")
    assert checkpoint["base_config"]["checkpoint"] == "checkpoints/groot_n15_small_so101_sim"
    assert checkpoint["base_config"]["noise"] == "zero"
    policy = eval_policy.residual_from_loaded(checkpoint, load_actor_program(checkpoint, path))
    env = SO101PaperSquareEnv(max_episode_steps=48)  # three chunks
    first, again = run_episode(env, policy, seed=200000), run_episode(env, policy, seed=200000)
    assert first == again and first.length == 48
