"""ppo_noise_groot.py: the noise policy's flow start reaches GR00T's flow, decisions are credited per chunk, and
eval_policy.py steers the base with a checkpoint's noise program as the script did. Tiny random GR00T checkpoints
from groot_fixtures.py: no network, no GPU."""

import copy
import dataclasses
import json
import shutil

import numpy as np
import pytest
import torch

import eval_policy
import ppo_noise_groot as ppo
import ppo_residual_groot
from actor_program import export_actor
from base_policies import make_base_policy
from checkpoint_io import load_checkpoint, load_noise_program, save_checkpoint
from groot_base import GrootOptions
from groot_policy import GR00TPolicy
from groot_fixtures import (  # noqa: F401 (fixtures)
    METADATA, checkpoint_dir, one_torch_thread, short_episodes, tokenizer_dir, write_checkpoint,
)
from so101_env import ACTION_DIM, STATE_DIM, SO101PaperSquareEnv

NUM_ENVS = 3
HORIZON = 16  # the tiny checkpoint's chunk, as N1.5's


def local_base(checkpoint, tokenizer, num_envs=NUM_ENVS, **kwargs):
    return make_base_policy("groot", num_envs, checkpoint=str(checkpoint), tokenizer=str(tokenizer), dtype="float32",
                            device="cpu", seed=0, **kwargs)


def start_states(num_envs=NUM_ENVS):
    env = SO101PaperSquareEnv()
    return np.stack([env.reset(seed=i)[0] for i in range(num_envs)])


def random_images(num_envs=NUM_ENVS, seed=0):
    rng = np.random.default_rng(seed)
    return {camera: rng.integers(0, 256, (num_envs, 64, 64, 3), dtype=np.uint8) for camera in ("top_view", "wrist")}


def first_chunk(base, flow_start=None):
    """The base's joint targets (N, chunk_steps, 6) of a fresh chunk for every env, started at `flow_start`."""
    base.reset()
    base.act(start_states(base.num_envs), random_images(base.num_envs), flow_start)
    return base.queue.chunks.copy()


# ---------------------------------------------------------------------- the flow start reaches the flow
@pytest.fixture(scope="module")
def random_base(checkpoint_dir, tokenizer_dir):
    return local_base(checkpoint_dir, tokenizer_dir, noise="random")


def test_the_flow_start_decides_the_chunk_and_zero_is_the_mean_start(random_base, checkpoint_dir):
    policy = random_base.model  # the same network, started at the Gaussian's mean
    zero_policy = GR00TPolicy(policy.model, policy.tokenizer, policy.metadata, noise="zero")
    zero_base = make_base_policy("groot", NUM_ENVS, model=zero_policy, checkpoint=str(checkpoint_dir))
    rng = np.random.default_rng(0)
    one, other = rng.normal(size=(2, NUM_ENVS, HORIZON, ACTION_DIM)).astype(np.float32)

    chunk = first_chunk(random_base, one)
    np.testing.assert_array_equal(first_chunk(random_base, one), chunk)  # the start decides: no draw of the base's own
    assert (np.abs(first_chunk(random_base, other) - chunk).max(axis=(1, 2)) > 1e-2).all()  # every env's chunk
    zeros = np.zeros((NUM_ENVS, HORIZON, ACTION_DIM), np.float32)
    np.testing.assert_array_equal(first_chunk(random_base, zeros), first_chunk(zero_base))  # the mean start, exactly
    assert np.abs(first_chunk(random_base) - first_chunk(zero_base)).max() > 1e-2  # which the base's own draw is not


def test_flow_starts_land_on_the_envs_that_need_a_chunk_in_the_models_key_order(tmp_path, tokenizer_dir):
    # The model lists the gripper first; the env's joints end with it.
    metadata = copy.deepcopy(METADATA)
    entry = metadata["new_embodiment"]
    for part in (entry["statistics"], entry["modalities"]):
        part["action"] = {"gripper": part["action"]["gripper"], "single_arm": part["action"]["single_arm"]}
    base = local_base(write_checkpoint(tmp_path / "gripper_first", metadata=metadata), tokenizer_dir)
    assert base.action_keys == ["single_arm", "gripper"]
    starts, get_action = [], base.model.get_action
    base.model.get_action = lambda observation, initial_noise: starts.append(initial_noise) or get_action(
        observation, initial_noise=initial_noise)
    states, images = start_states(), random_images()
    model_order = [5, 0, 1, 2, 3, 4]  # gripper, then the five arm joints

    flow_start = np.arange(NUM_ENVS * HORIZON * ACTION_DIM, dtype=np.float32).reshape(NUM_ENVS, HORIZON, ACTION_DIM) / 100
    base.reset()
    base.act(states, images, flow_start)
    np.testing.assert_array_equal(starts[0], flow_start[..., model_order])
    base.act(states, images, -flow_start)  # mid-chunk: nobody decides, no call
    base.reset(np.array([False, True, False]))
    base.act(states, images, -flow_start)
    assert len(starts) == 2
    np.testing.assert_array_equal(starts[1], -flow_start[1:2][..., model_order])  # env 1's row alone

    with pytest.raises(ValueError, match=r"flow_start must be finite, of shape \(num_envs, action_horizon, 6\) = \(3, 16, 6\)"):
        base.model_flow_starts(flow_start[:, :8])
    with pytest.raises(ValueError, match=r"initial_noise must be finite, of shape \[B, 16, 6\]"):
        get_action({}, initial_noise=np.zeros((1, 16, 7), np.float32))


def test_the_server_backend_refuses_a_flow_start_with_a_clear_error(random_base, checkpoint_dir):
    remote = make_base_policy("groot", 1, model=random_base.model, checkpoint=str(checkpoint_dir), backend="server")
    with pytest.raises(ValueError, match="the GR00T server backend cannot start the flow at a given point"):
        remote.model_flow_starts(np.zeros((1, HORIZON, ACTION_DIM), np.float32))
    with pytest.raises(SystemExit, match="--groot.backend must be local: a server starts the flow itself"):
        ppo.validate_args(ppo.Args(groot=GrootOptions(backend="server")))


# ---------------------------------------------------------------------- credit per chunk
def test_chunk_advantages_on_a_hand_built_sequence():
    gamma, lam = 0.9, 0.8
    # Env 0: decisions at steps 0, 3 and 5; its episode ends with step 4, so the chunk chosen at 3 ran 2 steps and
    # the env decided again at 5, off the beat; that last decision still runs when the rollout ends (bootstrap 40).
    # Env 1: two whole 4-step chunks. Values where no env decided are junk that must not count.
    rewards = torch.tensor([[1.0, 0.5], [2, 0.5], [3, 0.5], [4, 0.5], [5, -1], [6, -1], [7, -1], [8, -1]])
    decided = torch.tensor([[1, 1], [0, 0], [0, 0], [1, 0], [0, 1], [1, 0], [0, 0], [0, 0]], dtype=torch.bool)
    ended = torch.zeros(8, 2, dtype=torch.bool)
    ended[4, 0] = True
    values = torch.full((8, 2), 999.0)
    values[[0, 3, 5], 0] = torch.tensor([10.0, 20, 30])
    values[[0, 4], 1] = torch.tensor([1.0, 2])
    next_value = torch.tensor([40.0, 3])

    advantages = ppo.chunk_advantages(rewards, decided, ended, values, next_value, gamma, lam)

    def chunk_reward(rewards):  # R = sum_j gamma^j r_{t+j}
        return sum(gamma**j * r for j, r in enumerate(rewards))

    last = chunk_reward([6, 7, 8]) + gamma**3 * 40 - 30  # k = 3, bootstrapped from the state after the rollout
    cut = chunk_reward([4, 5]) - 20  # k = 2, the episode ended: no bootstrap, no later advantage
    first = chunk_reward([1, 2, 3]) + gamma**3 * 20 - 10 + (gamma * lam) ** 3 * cut
    later = chunk_reward([-1] * 4) + gamma**4 * 3 - 2
    earlier = chunk_reward([0.5] * 4) + gamma**4 * 2 - 1 + (gamma * lam) ** 4 * later
    expected = torch.zeros(8, 2)
    expected[[0, 3, 5], 0] = torch.tensor([first, cut, last])
    expected[[0, 4], 1] = torch.tensor([earlier, later])
    torch.testing.assert_close(advantages, expected)


# ---------------------------------------------------------------------- the script and its evaluation
@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, checkpoint_dir, tokenizer_dir, short_episodes):
    args = ppo.Args(
        run_dir=str(tmp_path_factory.mktemp("runs")), seed=3, device="cpu", num_envs=2, num_steps=16,
        groot=dataclasses.replace(ppo.Args().groot, model=str(checkpoint_dir), tokenizer=str(tokenizer_dir), dtype="float32"),
        total_timesteps=96, num_minibatches=2, noise_num_minibatches=2, update_epochs=2, async_envs=False,
        critic_warmup_iterations=1, eval_every=3, eval_episodes=1, capture_video=False, hidden_size=32, noise_learning_rate=0.01,
    )
    return ppo.main(args)


def test_training_steers_the_flow_per_chunk_and_logs_it(trained_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    final = load_checkpoint(trained_run / "checkpoints" / "final.pt", base_policy="groot")
    assert final["trainer"] == "ppo_noise_groot.py" and final["iteration"] == 3 and final["alpha"] == 0.0
    assert final["base_config"]["noise"] == "zero"  # what evaluation's base alone runs: the mean start
    assert final["noise_policy"]["actor_mean.4.bias"].abs().max() > 0  # the update moved the mean away from zero
    events = EventAccumulator(str(trained_run))
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    assert {"noise/policy_loss", "noise/value_loss", "noise/approx_kl", "noise/std", "noise/mean_abs"} <= scalars
    assert not any(tag.startswith("losses/") for tag in scalars)  # alpha 0: the residual is not trained
    # Steps 0-47 of 40-step episodes: both envs decide at 0, 16 and 32, and again at 40, right after their reset.
    assert [e.value for e in events.Scalars("noise/decisions")] == [2.0, 2.0, 4.0]
    assert [e.value for e in events.Scalars("groot/calls")] == [1.0, 1.0, 2.0]


def test_with_alpha_the_residual_trains_on_top_of_the_steered_base(checkpoint_dir, tokenizer_dir, short_episodes, tmp_path):
    groot = GrootOptions(model=str(checkpoint_dir), tokenizer=str(tokenizer_dir), dtype="float32", noise="zero")
    run = ppo.main(ppo.Args(run_dir=str(tmp_path), device="cpu", num_envs=1, num_steps=16, total_timesteps=16, alpha=0.3,
                            num_minibatches=2, noise_num_minibatches=1, update_epochs=1, critic_warmup_iterations=0,
                            eval_every=0, hidden_size=16, async_envs=False, groot=groot))
    final = load_checkpoint(run / "checkpoints" / "final.pt")
    assert final["alpha"] == 0.3 and final["agent"]["actor_mean.4.bias"].abs().max() > 0  # the residual moved
    assert final["noise_policy"]["actor_mean.4.bias"].abs().max() > 0  # and so did the noise policy


def test_the_noise_program_is_the_policys_mean(trained_run):
    final = load_checkpoint(trained_run / "checkpoints" / "final.pt")
    noise_policy = ppo.NoisePolicy(STATE_DIM, HORIZON, final["args"]["hidden_size"])
    noise_policy.load_state_dict(final["noise_policy"])
    states = np.random.default_rng(0).normal(size=(3, STATE_DIM)).astype(np.float32) * 3
    with torch.no_grad():
        expected = noise_policy.flow_start_mean(torch.from_numpy(states)).numpy()
    np.testing.assert_array_equal(load_noise_program(final, "final.pt")(states), expected)
    assert expected.shape == (3, HORIZON, ACTION_DIM) and np.abs(expected).max() > 0


def test_eval_policy_steers_the_base_with_the_checkpoints_noise_program(trained_run, short_episodes, tmp_path):
    # A noise policy that moves every flow start far from the mean, so that steering shows in the chunks.
    final = load_checkpoint(trained_run / "checkpoints" / "final.pt")
    noise_policy = ppo.NoisePolicy(STATE_DIM, HORIZON, final["args"]["hidden_size"])
    noise_policy.load_state_dict(final["noise_policy"])
    with torch.no_grad():
        noise_policy.actor_mean[4].bias.fill_(1.5)
    steered = tmp_path / "steered.pt"
    save_checkpoint(steered, {**final, "noise_program": export_actor(noise_policy.flow_start_mean, STATE_DIM)})
    args = eval_policy.Args(model_path=str(steered), compare_base=True, n_episodes=1, seed=5,
                            output_json=str(tmp_path / "eval.json"), device="cpu")

    (_, build_steered, _, base_row), (_, build_base, _, _) = eval_policy.policies_to_evaluate(args)
    policy, base = build_steered(), build_base()
    states, images = start_states(1), random_images(1)
    policy.reset()
    policy.act(states, images)
    steered_chunk = policy.base.queue.chunks.copy()
    with torch.no_grad():
        flow_start = noise_policy.flow_start_mean(torch.as_tensor(states, dtype=torch.float32)).numpy()
    np.testing.assert_array_equal(steered_chunk, first_chunk(base, flow_start))  # the program's start, exactly
    assert np.abs(steered_chunk - first_chunk(base)).max() > 1e-2  # the base row starts at the mean
    assert base_row == "groot" and policy.alpha == 0.0

    steered_row, base_alone = eval_policy.main(args)  # and the whole evaluation runs, paired with its base
    assert [steered_row["policy"], base_alone["policy"]] == ["steering+groot", "groot"]
    assert "versus_base" in json.loads((tmp_path / "eval.json").read_text())["policies"][0]


def test_a_rollout_that_would_cut_a_chunk_is_refused(checkpoint_dir, tokenizer_dir, tmp_path):
    groot = GrootOptions(model=str(checkpoint_dir), tokenizer=str(tokenizer_dir), dtype="float32", noise="zero")
    with pytest.raises(SystemExit, match=r"--num-steps 12 must be a multiple of the chunk's 16 steps"):
        ppo.main(ppo.Args(run_dir=str(tmp_path), device="cpu", num_envs=1, num_steps=12, num_minibatches=1,
                          async_envs=False, groot=groot))


def test_a_residual_checkpoint_is_not_resumed_as_a_steering_run(trained_run, tmp_path):
    residual = {key: value for key, value in load_checkpoint(trained_run / "checkpoints" / "final.pt").items()
                if not key.startswith("noise_")}
    save_checkpoint(tmp_path / "run" / "checkpoints" / "latest.pt", {**residual, "trainer": "ppo_residual_groot.py"})
    with pytest.raises(SystemExit, match="holds no noise policy; resume it with the script that wrote it, "
                                         "ppo_residual_groot.py"):
        ppo.prepare_run(ppo.Args(resume=str(tmp_path / "run" / "checkpoints" / "latest.pt")))



def test_a_steering_checkpoint_is_not_resumed_by_the_residual_script(trained_run, tmp_path):
    copy_dir = tmp_path / "run"
    shutil.copytree(trained_run, copy_dir)
    halfway = torch.load(copy_dir / "checkpoints" / "final.pt", weights_only=True)
    halfway.update(iteration=1, global_step=32)
    save_checkpoint(copy_dir / "checkpoints" / "halfway.pt", halfway)
    with pytest.raises(SystemExit, match="also steers GR00T's flow with a noise policy; resume it with the script "
                                         "that wrote it, ppo_noise_groot.py"):
        ppo_residual_groot.prepare_run(ppo_residual_groot.Args(resume=str(copy_dir / "checkpoints" / "halfway.pt")))

def test_resume_continues_the_noise_policy(trained_run, short_episodes, tmp_path):
    copy_dir = tmp_path / "run"
    shutil.copytree(trained_run, copy_dir)
    halfway = torch.load(copy_dir / "checkpoints" / "final.pt", weights_only=True)
    halfway.update(iteration=2, global_step=64, run_dir=str(copy_dir))
    save_checkpoint(copy_dir / "checkpoints" / "halfway.pt", halfway)
    ppo.main(ppo.Args(resume=str(copy_dir / "checkpoints" / "halfway.pt")))
    final = load_checkpoint(copy_dir / "checkpoints" / "final.pt")
    assert final["iteration"] == 3 and final["global_step"] == 96
    assert not torch.equal(final["noise_policy"]["actor_mean.4.bias"], halfway["noise_policy"]["actor_mean.4.bias"])
    steps = [checkpoint["noise_optimizer"]["state"][0]["step"] for checkpoint in (halfway, final)]
    assert steps[1] > steps[0]  # Adam went on counting from the saved state, not from zero
