"""The optional reach-shaping term of SO101PaperSquare-v0 (RewardWeights.reach)."""

import math

import mujoco
import numpy as np
import pytest

from base_policies import make_base_policy
from so101_env import RewardWeights, SO101PaperSquareEnv


def tip_to_paper(obs: np.ndarray) -> float:
    """Gripper tip (obs[19:22]) to paper centre (obs[12:15]), computed from the observation alone."""
    return float(np.linalg.norm(obs[19:22].astype(np.float64) - obs[12:15].astype(np.float64)))


def test_reach_penalty_is_weight_times_distance_until_touched():
    env = SO101PaperSquareEnv(reward_weights=RewardWeights(reach=3.0))
    assert env.reach_penalty(0.1, touched_paper=False) == pytest.approx(0.3)
    assert env.reach_penalty(0.1, touched_paper=True) == 0.0


@pytest.mark.parametrize("bad", [-0.5, math.nan, math.inf])
def test_reach_weight_must_be_finite_and_non_negative(bad):
    with pytest.raises(ValueError, match="reach must be a finite number >= 0"):
        RewardWeights(reach=bad)


def test_reward_of_hand_built_state_subtracts_reach_times_distance():
    """Same seed, same action: the two envs reach the same state (the reward never feeds back into
    the physics), and with reach = 2 the reward is lower by 2 x the tip-to-paper distance."""
    plain, shaped = SO101PaperSquareEnv(), SO101PaperSquareEnv(reward_weights=RewardWeights(reach=2.0))
    for env in (plain, shaped):
        env.reset(seed=4)
        place = env._paper_qpos_adr
        env.data.qpos[place : place + 2] = (0.25, 0.12)  # a known spot, well away from the gripper at home
        mujoco.mj_forward(env.model, env.data)
    obs, reward, _, _, info = plain.step(np.zeros(6))
    shaped_obs, shaped_reward, _, _, shaped_info = shaped.step(np.zeros(6))
    np.testing.assert_array_equal(obs, shaped_obs)
    distance = tip_to_paper(shaped_obs)
    assert 0.05 < distance < 0.2  # the tip hovers ~6 cm above the table, the paper lies ~13 cm away
    assert shaped_reward == pytest.approx(reward - 2.0 * distance, abs=1e-6)
    assert shaped_info["touched_paper"] is False
    assert "touched_paper" not in info  # reach = 0: no contact search, no key


def test_contact_detection_on_a_constructed_state():
    env = SO101PaperSquareEnv(reward_weights=RewardWeights(reach=1.0))
    env.reset(seed=0)
    m, d = env.model, env.data
    assert not env._jaw_tip_touches_paper()  # the paper lies on the table, the gripper 6 cm above it

    def paper_top_at(geom_name, dx=0.0):
        """Put the sheet's top face through the centre of a fingertip capsule, the sheet's centre `dx`
        from it along x, and recompute the contacts."""
        tip = d.geom_xpos[m.geom(geom_name).id].copy()
        adr = env._paper_qpos_adr
        d.qpos[adr : adr + 3] = (tip[0] + dx, tip[1], tip[2] - env._paper_rest_height)
        d.qpos[adr + 3 : adr + 7] = (1, 0, 0, 0)
        mujoco.mj_forward(m, d)  # runs collision detection: d.contact holds the new contacts

    paper_top_at("moving_jaw_tip")
    assert env._jaw_tip_touches_paper()

    # The fixed jaw's tip is 1.8 cm behind the moving one (-x): a sheet whose front edge (x + 0.05)
    # ends 5 mm past the fixed tip touches that tip only, which is not the touch.
    env.reset(seed=0)
    paper_top_at("fixed_jaw_tip", dx=-0.045)
    touching = {(m.geom(a).name, m.geom(b).name) for a, b in zip(d.contact.geom1, d.contact.geom2)}
    assert any("fixed_jaw" in a or "fixed_jaw" in b for a, b in touching)
    assert not env._jaw_tip_touches_paper()


def test_first_touch_flips_touched_paper_and_ends_the_penalty():
    """The Jacobian base presses the moving jaw's tip onto the paper: run it with and without the
    reach term in lockstep and compare the rewards step by step."""
    weight = 1.5
    plain, shaped = SO101PaperSquareEnv(), SO101PaperSquareEnv(reward_weights=RewardWeights(reach=weight))
    base = make_base_policy("jacobian", num_envs=1)

    def run(seed):
        obs, _ = plain.reset(seed=seed)
        shaped.reset(seed=seed)
        base.reset()
        touched_at = None
        for step in range(150):
            action = base.act(obs[None])[0]
            obs, reward, terminated, truncated, _ = plain.step(action)
            shaped_obs, shaped_reward, _, _, info = shaped.step(action)
            np.testing.assert_array_equal(obs, shaped_obs)
            if touched_at is None and info["touched_paper"]:
                touched_at = step
            if touched_at is None:
                assert shaped_reward == pytest.approx(reward - weight * tip_to_paper(shaped_obs), abs=1e-6)
            else:
                # From the first touch on: no penalty, and the flag stays up even if the tip lifts.
                assert info["touched_paper"] and shaped_reward == reward
            if terminated or truncated:
                break
        return touched_at

    touched_at = run(seed=0)
    assert touched_at is not None and touched_at > 5  # the base hovers first, then presses
    assert shaped._touched_paper
    shaped.reset(seed=1)
    assert not shaped._touched_paper  # a reset clears the episode's memory
    assert run(seed=1) is not None


def test_zero_weight_leaves_rewards_and_trajectory_unchanged():
    """reach = 0 given explicitly is the default: same observations, rewards and info, bit for bit."""
    def rollout(weights):
        env = SO101PaperSquareEnv(reward_weights=weights)
        obs, _ = env.reset(seed=7)
        actions = np.random.default_rng(1).uniform(-1, 1, size=(40, 6))
        steps = [env.step(a) for a in actions]
        return obs, steps

    (obs_a, steps_a), (obs_b, steps_b) = rollout(RewardWeights()), rollout(RewardWeights(reach=0.0))
    np.testing.assert_array_equal(obs_a, obs_b)
    for (o1, r1, t1, u1, i1), (o2, r2, t2, u2, i2) in zip(steps_a, steps_b):
        np.testing.assert_array_equal(o1, o2)
        assert (r1, t1, u1, i1) == (r2, t2, u2, i2) and "touched_paper" not in i1
