"""Physics and task facts of SO101PaperSquare-v0."""

import so101_env  # noqa: I001  first: it picks the headless OpenGL backend before mujoco loads

import math

import gymnasium as gym
import mujoco
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from so101_env import Randomization, RewardWeights, SO101PaperSquareEnv


@pytest.fixture
def env():
    env = SO101PaperSquareEnv()
    yield env
    env.close()


def place_paper(env, x, y, yaw=0.0):
    """Teleport the sheet flat onto the table at (x, y) with the given yaw."""
    adr = env._paper_qpos_adr
    env.data.qpos[adr : adr + 3] = (x, y, env._paper_rest_height)
    env.data.qpos[adr + 3 : adr + 7] = (np.cos(yaw / 2), 0, 0, np.sin(yaw / 2))
    env.data.qvel[:] = 0
    mujoco.mj_forward(env.model, env.data)


def test_rates_timestep_and_substeps(env):
    assert env.model.opt.timestep == pytest.approx(1 / 360)
    assert so101_env.PHYSICS_STEPS_PER_POLICY == 12
    assert so101_env.CONTROL_STEPS_PER_POLICY * so101_env.PHYSICS_STEPS_PER_CONTROL == 12
    env.reset(seed=0)
    t0 = env.data.time
    env.step(np.zeros(6))
    assert env.data.time - t0 == pytest.approx(1 / 30)


def test_model_follows_official_so101(env):
    m = env.model
    assert [m.actuator(i).name for i in range(m.nu)] == list(so101_env.JOINT_NAMES)
    np.testing.assert_allclose(m.actuator_gainprm[:, 0], 998.22)
    np.testing.assert_allclose(m.actuator_forcerange, np.tile([-2.94, 2.94], (6, 1)))
    assert m.jnt_range[m.joint("shoulder_pan").id] == pytest.approx([-1.91986, 1.91986])
    arm_mass = m.body("base").subtreemass[0]
    assert arm_mass == pytest.approx(0.644, abs=0.01)
    assert m.body("paper").mass[0] == pytest.approx(0.005)


def test_paper_inside_square_is_success_outside_is_not(env):
    env.reset(seed=0)
    gx, gy = env.goal_xy
    place_paper(env, gx, gy)
    success, distance, orientation = env._task_status()
    assert success and distance == pytest.approx(0.0, abs=1e-9) and orientation == pytest.approx(0.0, abs=1e-9)

    place_paper(env, gx + 0.02, gy)  # long side still fits: 0.07 + 0 <= 0.08, short 0.05 + 0.02 <= 0.08
    assert env._task_status()[0]
    place_paper(env, gx, gy + 0.02)  # long half-side 0.07 + 0.02 sticks out of the 0.08 square
    assert not env._task_status()[0]
    place_paper(env, gx, gy, yaw=0.5)  # rotated corners stick out
    assert not env._task_status()[0]
    place_paper(env, gx, gy, yaw=np.pi)  # a half turn is the same sheet
    assert env._task_status()[0]


def test_success_matches_explicit_corner_check(env):
    """The env's closed-form extent test agrees with checking the four corners one by one."""
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    half = env._paper_half_extents
    for _ in range(300):
        x, y = env.goal_xy + rng.uniform(-0.04, 0.04, size=2)
        yaw = rng.uniform(-0.4, 0.4)
        place_paper(env, x, y, yaw)
        rot = np.array([[np.cos(yaw), -np.sin(yaw)], [np.sin(yaw), np.cos(yaw)]])
        corners = np.array([x, y]) + (np.array([[1, 1], [1, -1], [-1, 1], [-1, -1]]) * half) @ rot.T
        expected = np.all(np.abs(corners - env.goal_xy) <= env.tape_half_size)
        assert env._task_status()[0] == expected


def test_lifted_paper_is_not_success(env):
    env.reset(seed=0)
    place_paper(env, *env.goal_xy)
    adr = env._paper_qpos_adr
    env.data.qpos[adr + 2] = 0.05
    mujoco.mj_forward(env.model, env.data)
    assert not env._task_status()[0]


def test_success_terminates_with_bonus(env):
    env.reset(seed=0)
    place_paper(env, *env.goal_xy)
    _, reward, terminated, truncated, info = env.step(np.zeros(6))
    assert terminated and not truncated and info["success"]
    assert reward == pytest.approx(10 - 2 * info["dist_to_goal"] - 0.1 * info["orientation_error"] - 0.01)


def test_reward_of_hand_built_state_matches_formula():
    weights = RewardWeights(success=7.0, distance=3.0, orientation=0.5, time=0.02)
    env = SO101PaperSquareEnv(reward_weights=weights)
    env.reset(seed=1)
    gx, gy = env.goal_xy
    place_paper(env, gx + 0.03, gy - 0.04, yaw=0.2)
    success, distance, orientation = env._task_status()
    assert not success
    assert distance == pytest.approx(0.05)
    assert orientation == pytest.approx(0.2)
    assert env.task_reward(success, distance, orientation) == pytest.approx(-3.0 * 0.05 - 0.5 * 0.2 - 0.02)


def test_observation_layout(env):
    obs, _ = env.reset(seed=3)
    assert obs.shape == (25,) and obs.dtype == np.float32
    np.testing.assert_allclose(obs[0:6], env.home_qpos, atol=1e-6)
    paper = env.data.xpos[env._paper_body]
    np.testing.assert_allclose(obs[12:15], paper, atol=1e-6)
    np.testing.assert_allclose(obs[19:22], env.data.site_xpos[env._tip_site], atol=1e-6)
    np.testing.assert_allclose(obs[22:24], env.goal_xy - paper[:2], atol=1e-6)


def test_randomization_stays_in_range():
    env = SO101PaperSquareEnv()
    r = env.randomization
    for seed in range(200):
        obs, info = env.reset(seed=seed)
        assert np.all(np.abs(info["paper_offset"]) <= r.paper_xy)
        assert abs(info["paper_yaw"]) <= r.paper_yaw
        assert abs(info["friction_scale"] - 1) <= r.friction
        assert abs(info["mass_scale"] - 1) <= r.mass
        np.testing.assert_allclose(obs[12:14], so101_env.PAPER_NOMINAL_XY + info["paper_offset"], atol=1e-6)
        assert env.model.pair_friction[0, 0] == pytest.approx(0.35 * info["friction_scale"])
        assert env.model.body_mass[env._paper_body] == pytest.approx(0.005 * info["mass_scale"])


def test_same_seed_same_trajectory():
    def rollout(seed):
        env = SO101PaperSquareEnv()
        obs, _ = env.reset(seed=seed)
        actions = np.random.default_rng(123).uniform(-1, 1, size=(30, 6))
        return np.stack([obs] + [env.step(a)[0] for a in actions])

    np.testing.assert_array_equal(rollout(5), rollout(5))
    assert not np.array_equal(rollout(5), rollout(6))


def test_bad_actions_raise_and_out_of_range_actions_are_clipped(env):
    env.reset(seed=0)
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros(5))
    with pytest.raises(ValueError, match="NaN or inf"):
        env.step(np.array([0, 0, np.nan, 0, 0, 0]))
    with pytest.raises(ValueError, match="NaN or inf"):
        env.step(np.array([0, 0, np.inf, 0, 0, 0]))

    def after(action):
        e = SO101PaperSquareEnv()
        e.reset(seed=0)
        return e.step(np.asarray(action, dtype=float))[0]

    np.testing.assert_array_equal(after([5, -7, 1, 0, 0, 0]), after([1, -1, 1, 0, 0, 0]))


def test_tape_square_resizes(env):
    env.set_tape_half_size(0.12)
    env.reset(seed=0)
    gx, gy = env.goal_xy
    place_paper(env, gx, gy + 0.04)
    assert env._task_status()[0]
    inner_edge = env.model.geom_pos[env.model.geom("tape_py").id][1] - env.model.geom_size[env.model.geom("tape_py").id][1]
    assert inner_edge == pytest.approx(0.12)
    with pytest.raises(ValueError, match="tape_half_size"):
        env.set_tape_half_size(-1.0)


def project_to_image(model, data, camera, point, size):
    """Pixel (column, row) of a world point in a camera image of size x size."""
    cam = model.camera(camera).id
    local = data.cam_xmat[cam].reshape(3, 3).T @ (point - data.cam_xpos[cam])
    focal = (size / 2) / np.tan(np.deg2rad(model.cam_fovy[cam]) / 2)
    return size / 2 + focal * local[0] / -local[2], size / 2 - focal * local[1] / -local[2]


def test_top_view_shows_red_tape_where_the_square_is(env):
    env.reset(seed=0)
    image = env.render_cameras()["top_view"]
    assert image.shape == (224, 224, 3) and image.dtype == np.uint8
    red = (image[..., 0] > 150) & (image[..., 1] < 70) & (image[..., 2] < 70)
    assert red.sum() > 500

    def is_red(dx, dy):
        point = np.array([env.goal_xy[0] + dx, env.goal_xy[1] + dy, 0.0])
        col, row = project_to_image(env.model, env.data, "top_view", point, 224)
        return red[int(round(row)), int(round(col))]

    mid = env.tape_half_size + 0.01  # middle of the 2 cm tape
    # The three strips away from the arm's home pose are red; the middle is bare table.
    assert is_red(mid, 0) and is_red(-mid, 0) and is_red(0, -mid)
    assert not is_red(0, 0) and not is_red(mid + 0.03, 0)


def test_render_is_dual_camera_frame():
    env = SO101PaperSquareEnv(render_mode="rgb_array", image_size=96)
    env.reset(seed=0)
    frame = env.render()
    assert frame.shape == (96, 192, 3)
    images = env.render_cameras()
    np.testing.assert_array_equal(frame[:, :96], images["top_view"])
    np.testing.assert_array_equal(frame[:, 96:], images["wrist"])
    assert images["wrist"].std() > 5  # the wrist camera sees something, not a blank frame
    env.close()


def test_image_observation_dict():
    env = SO101PaperSquareEnv(use_image_obs=True, image_size=64)
    obs, _ = env.reset(seed=0)
    assert set(obs) == {"state", "top_view", "wrist"}
    assert obs["top_view"].shape == (64, 64, 3)
    assert env.observation_space.contains(obs)
    env.close()



def test_images_up_to_the_scenes_offscreen_framebuffer_render():
    env = SO101PaperSquareEnv(render_mode="rgb_array", image_size=so101_env.MAX_IMAGE_SIZE)
    framebuffer = env.model.vis.global_
    assert so101_env.MAX_IMAGE_SIZE == min(framebuffer.offwidth, framebuffer.offheight)
    env.reset(seed=0)
    assert env.render().shape == (so101_env.MAX_IMAGE_SIZE, 2 * so101_env.MAX_IMAGE_SIZE, 3)
    env.close()


@pytest.mark.parametrize("settings, message", [
    (lambda: RewardWeights(success=math.nan), r"RewardWeights.success must be a finite number >= 0 and <= 1000"),
    (lambda: RewardWeights(distance=-2.0), r"RewardWeights.distance must be a finite number >= 0 and <= 1000"),
    (lambda: RewardWeights(time=1e9), r"RewardWeights.time must be a finite number >= 0 and <= 1000"),
    (lambda: Randomization(paper_xy=math.nan), r"Randomization.paper_xy must be a finite number >= 0"),
    (lambda: Randomization(paper_yaw=math.inf), r"Randomization.paper_yaw must be a finite number within \[0, 3.14"),
    (lambda: Randomization(friction=1.0), r"Randomization.friction must be within \[0, 1\)"),
    (lambda: Randomization(mass=-0.1), r"Randomization.mass must be within \[0, 1\)"),
    (lambda: SO101PaperSquareEnv(randomization=Randomization(paper_xy=0.6)), "could start off the table"),
    (lambda: SO101PaperSquareEnv(reward_weights={"success": 10.0}), "reward_weights must be a RewardWeights"),
    (lambda: SO101PaperSquareEnv(image_size=482), r"image_size must be an integer within \[16, 480\]"),
    (lambda: SO101PaperSquareEnv(image_size=224.5), r"image_size must be an integer within \[16, 480\]"),
    (lambda: SO101PaperSquareEnv(max_episode_steps=math.nan), r"max_episode_steps must be an integer within \[1, "),
    (lambda: SO101PaperSquareEnv(max_episode_steps=10**12), r"max_episode_steps must be an integer within \[1, "),
])
def test_settings_out_of_range_are_refused_with_a_clear_error(settings, message):
    with pytest.raises(ValueError, match=message):
        settings()

def test_simulation_blowup_truncates_and_is_counted(env):
    env.reset(seed=0)
    env.data.qvel[0] = np.nan
    obs, reward, terminated, truncated, info = env.step(np.zeros(6))
    assert truncated and not terminated and info["sim_unstable"]
    assert np.all(np.isfinite(obs))
    assert env.unstable_episodes == 1


def test_flung_paper_truncates_as_unstable(env):
    """A sheet flying off at 50 m/s with every number finite (no MuJoCo warning) is a blow-up too."""
    env.reset(seed=0)
    paper = env.model.joint("paper_free")
    env.data.qpos[paper.qposadr[0] + 2] = 0.3  # in the air, clear of every contact
    env.data.qvel[paper.dofadr[0]] = 50.0
    _, _, terminated, truncated, info = env.step(np.zeros(6))
    assert not env.data.warning.number.any()
    assert truncated and not terminated and info["sim_unstable"] and math.isnan(info["dist_to_goal"])
    assert env.unstable_episodes == 1


def test_episode_limit_truncates():
    env = SO101PaperSquareEnv(max_episode_steps=5)
    env.reset(seed=0)
    for _ in range(4):
        assert not env.step(np.zeros(6))[3]
    assert env.step(np.zeros(6))[3]


def test_registered_and_passes_gymnasium_checker():
    env = gym.make("SO101PaperSquare-v0")
    check_env(env.unwrapped, skip_render_check=True)
    env.close()
