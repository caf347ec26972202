"""Base policies: the batched interface, the Jacobian controller's behaviour, composition."""

import numpy as np
import pytest

from base_policies import JacobianBasePolicy, compose_action, make_base_policy
from so101_env import SO101PaperSquareEnv


def test_make_base_policy_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown base policy 'groot2'.*jacobian"):
        make_base_policy("groot2", num_envs=1)


def test_zero_base_is_zero_and_checks_shapes():
    base = make_base_policy("zero", num_envs=3)
    assert np.array_equal(base.act(np.ones((3, 25))), np.zeros((3, 6)))
    with pytest.raises(ValueError, match=r"shape \(3, 25\)"):
        base.act(np.ones((2, 25)))


def test_compose_action_is_clipped_sum():
    base = np.array([[0.5, -0.5, 0.9, 0, 0, 0]])
    residual = np.array([[1.0, 1.0, 1.0, -1, 0, 0]])
    np.testing.assert_allclose(compose_action(base, residual, 0.5), [[1.0, 0.0, 1.0, -0.5, 0, 0]])


def test_jacobian_kinematics_match_the_simulator():
    env = SO101PaperSquareEnv()
    obs, _ = env.reset(seed=0)
    base = JacobianBasePolicy(num_envs=1)
    tip, pointing, *_ = base._kinematics(obs[None, 0:6].astype(float))
    np.testing.assert_allclose(tip[0], obs[19:22], atol=1e-6)
    assert pointing[0, 2] < -0.9  # home pose points the gripper down


def test_jacobian_base_slides_the_paper_into_the_square():
    env = SO101PaperSquareEnv()
    base = JacobianBasePolicy(num_envs=1)
    obs, _ = env.reset(seed=2)
    start_distance = np.linalg.norm(obs[22:24])
    base.reset()
    for _ in range(400):
        action = base.act(obs[None])[0]
        assert action.shape == (6,) and np.all(np.abs(action) <= 1)
        obs, _, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            break
    assert start_distance > 0.15
    assert info["success"] and terminated


def test_jacobian_base_is_batched_with_per_env_reset():
    envs = [SO101PaperSquareEnv() for _ in range(2)]
    states = np.stack([e.reset(seed=i)[0] for i, e in enumerate(envs)])
    base = JacobianBasePolicy(num_envs=2)
    single = JacobianBasePolicy(num_envs=1)
    for _ in range(60):
        actions = base.act(states)
        np.testing.assert_allclose(actions[1], single.act(states[1:])[0])
        states = np.stack([e.step(a)[0] for e, a in zip(envs, actions)])
    assert (base.phase != base.APPROACH).all()
    base.reset(np.array([True, False]))
    assert base.phase[0] == base.APPROACH and base.phase[1] != base.APPROACH
