"""The MJCF files: the robot in so101.xml, the scene that includes it, the `home` keyframe.

The physical facts below are the ones the simulation had before the arm moved to its own
file; together with the unchanged body/joint order they pin the simulation down.
"""

import pathlib

import mujoco
import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
ROBOT_XML = ROOT / "so101.xml"
SCENE_XML = ROOT / "paper_square_realistic.xml"

ARM_JOINTS = ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper")
ARM_BODIES = ("base", "shoulder", "upper_arm", "lower_arm", "wrist", "gripper", "camera_mount", "moving_jaw")
HOME_ARM = np.array([0.0, -0.47, 0.58, 1.45, 0.0, 0.0])
PAPER_XY = np.array([0.20, 0.11])
GOAL_XY = np.array([0.20, -0.11])

# Link masses of the official model (kg); camera_mount's comes from its board geom.
BODY_MASS = {
    "base": 0.147,
    "shoulder": 0.100006,
    "upper_arm": 0.103,
    "lower_arm": 0.104,
    "wrist": 0.079,
    "gripper": 0.087,
    "camera_mount": 0.007776,
    "moving_jaw": 0.012,
    "paper": 0.005,
}
JOINT_RANGE = {
    "shoulder_pan": (-1.91986, 1.91986),
    "shoulder_lift": (-1.7453293, 1.7453293),
    "elbow_flex": (-1.69, 1.69),
    "wrist_flex": (-1.658063, 1.658063),
    "wrist_roll": (-2.7438473, 2.7438473),
    "gripper": (-0.174533, 1.7453292),
}
CTRL_RANGE = {
    "shoulder_pan": (-1.91986, 1.91986),
    "shoulder_lift": (-1.74533, 1.74533),
    "elbow_flex": (-1.69, 1.69),
    "wrist_flex": (-1.65806, 1.65806),
    "wrist_roll": (-2.74385, 2.84121),
    "gripper": (-0.17453, 1.74533),
}


@pytest.fixture(scope="module")
def robot():
    return mujoco.MjModel.from_xml_path(str(ROBOT_XML))


@pytest.fixture(scope="module")
def scene():
    return mujoco.MjModel.from_xml_path(str(SCENE_XML))


def home_data(m):
    d = mujoco.MjData(m)
    mujoco.mj_resetDataKeyframe(m, d, m.key("home").id)
    mujoco.mj_forward(m, d)
    return d


def test_robot_file_compiles_alone(robot):
    assert (robot.nq, robot.nv, robot.nu, robot.njnt) == (6, 6, 6, 6)
    assert [robot.joint(i).name for i in range(robot.njnt)] == list(ARM_JOINTS)
    assert [robot.body(i).name for i in range(1, robot.nbody)] == list(ARM_BODIES)
    assert robot.camera("wrist").id >= 0 and robot.site("gripperframe").id >= 0
    assert robot.opt.integrator == mujoco.mjtIntegrator.mjINT_IMPLICITFAST
    assert robot.nkey == 0  # the keyframe needs the paper, so it lives in the scene


def test_scene_includes_robot(scene, robot):
    text = SCENE_XML.read_text()
    assert '<include file="so101.xml"/>' in text
    # The arm is defined once, in so101.xml.
    for tag in ('<body name="base"', "<actuator>", 'class="sts3215"', 'material name="printed_yellow"'):
        assert tag not in text
    # Everything the robot file defines arrives unchanged in the scene.
    for name in ARM_BODIES:
        b_r, b_s = robot.body(name), scene.body(name)
        for field in ("mass", "inertia", "ipos", "iquat", "pos", "quat"):
            np.testing.assert_array_equal(getattr(b_r, field), getattr(b_s, field), err_msg=f"{name}.{field}")
    for name in ARM_JOINTS:
        for field in ("range", "damping", "armature", "frictionloss"):
            np.testing.assert_array_equal(getattr(robot.joint(name), field), getattr(scene.joint(name), field))
        np.testing.assert_array_equal(robot.actuator(name).gainprm, scene.actuator(name).gainprm)
        np.testing.assert_array_equal(robot.actuator(name).biasprm, scene.actuator(name).biasprm)


def test_model_order_and_counts(scene):
    # Paper first, then the arm: qpos[0:7] is the paper's free joint, qpos[7:13] the arm.
    assert (scene.nq, scene.nv, scene.nu, scene.njnt, scene.nbody, scene.ngeom) == (13, 12, 6, 7, 11, 27)
    assert (scene.ncam, scene.nsite, scene.nlight, scene.npair, scene.nexclude, scene.nkey) == (2, 3, 1, 1, 0, 1)
    assert [scene.body(i).name for i in range(scene.nbody)] == ["world", "goal", "paper", *ARM_BODIES]
    assert scene.jnt_qposadr[scene.joint("paper_free").id] == 0
    assert [scene.jnt_qposadr[scene.joint(n).id] for n in ARM_JOINTS] == list(range(7, 13))
    assert [scene.actuator(i).name for i in range(scene.nu)] == list(ARM_JOINTS)
    assert [scene.camera(i).name for i in range(scene.ncam)] == ["top_view", "wrist"]


def test_physics_options(scene):
    o = scene.opt
    assert o.timestep == 1 / 360
    assert o.integrator == mujoco.mjtIntegrator.mjINT_IMPLICITFAST
    assert o.cone == mujoco.mjtCone.mjCONE_ELLIPTIC
    assert (o.impratio, o.iterations, o.ls_iterations) == (10, 20, 20)


def test_masses_and_inertias(scene):
    for name, mass in BODY_MASS.items():
        assert scene.body(name).mass[0] == pytest.approx(mass, rel=1e-9), name
    assert scene.body_subtreemass[scene.body("base").id] == pytest.approx(0.639782, rel=1e-9)
    # Principal inertias of the official links (spot checks).
    np.testing.assert_allclose(scene.body("upper_arm").inertia.sum(), 3.30605e-04, rtol=1e-5)
    np.testing.assert_allclose(scene.body("moving_jaw").inertia.sum(), 1.379197e-05, rtol=1e-5)


def test_joints_and_servos(scene):
    for name in ARM_JOINTS:
        j, a = scene.joint(name), scene.actuator(name)
        np.testing.assert_allclose(j.range, JOINT_RANGE[name])
        np.testing.assert_allclose(a.ctrlrange, CTRL_RANGE[name])
        assert (j.damping[0], j.frictionloss[0], j.armature[0]) == pytest.approx((0.60, 0.052, 0.028))
        # STS3215 position servo: force = kp (ctrl - q) - kv qdot, clamped to +-2.94 N m.
        assert a.gainprm[0] == pytest.approx(998.22)
        assert a.biasprm[:3] == pytest.approx([0.0, -998.22, -2.731])
        np.testing.assert_allclose(a.forcerange, (-2.94, 2.94))
        assert a.trnid[0] == j.id


def test_contacts(scene):
    pair = scene.pair("paper_table")
    assert {scene.geom(pair.geom1[0]).name, scene.geom(pair.geom2[0]).name} == {"paper", "table"}
    np.testing.assert_allclose(pair.friction, (0.35, 0.35, 0.005, 0.0001, 0.0001))
    paper = scene.geom("paper")
    np.testing.assert_allclose(paper.size, (0.05, 0.07, 0.0005))
    for name in ("fixed_jaw_palm", "fixed_jaw_finger", "fixed_jaw_tip", "moving_jaw_root", "moving_jaw_finger", "moving_jaw_tip"):
        g = scene.geom(name)
        assert (g.priority[0], g.condim[0]) == (1, 6)
        np.testing.assert_allclose(g.friction, (1, 5e-3, 5e-4))

    def can_collide(a, b):
        return bool(a.contype & b.conaffinity) or bool(b.contype & a.conaffinity)

    arm_geoms = [scene.geom(i) for i in range(scene.ngeom) if scene.body(scene.geom_bodyid[i]).name in ARM_BODIES]
    # No arm geom can touch another (hence no contact excludes), all can touch the table,
    # only the fingertip pads can touch the paper, and the paper meets the table only via the pair.
    for i, a in enumerate(arm_geoms):
        assert not any(can_collide(a, b) for b in arm_geoms[i + 1 :]), a.name
        assert can_collide(a, scene.geom("table")), a.name
        assert can_collide(a, paper) == (a.priority[0] == 1), a.name
    assert not can_collide(paper, scene.geom("table"))


def test_home_keyframe(scene):
    key = scene.key("home")
    paper_half_thickness = scene.geom("paper").size[2]
    np.testing.assert_array_equal(key.qpos[:2], PAPER_XY)
    assert key.qpos[2] == paper_half_thickness
    np.testing.assert_array_equal(key.qpos[3:7], (1, 0, 0, 0))
    np.testing.assert_array_equal(key.qpos[7:13], HOME_ARM)
    np.testing.assert_array_equal(key.ctrl, HOME_ARM)
    np.testing.assert_array_equal(key.qvel, np.zeros(scene.nv))

    d = home_data(scene)
    assert d.body("paper").xpos[2] - paper_half_thickness == pytest.approx(0.0, abs=1e-12)  # on the table
    # It is a rest state: a second of physics moves neither the arm nor the paper much.
    for _ in range(360):
        mujoco.mj_step(scene, d)
    np.testing.assert_allclose(d.qpos[7:13], HOME_ARM, atol=0.02)
    np.testing.assert_allclose(d.qpos[:3], key.qpos[:3], atol=1e-4)


def test_frame_conventions_of_the_header(scene):
    d = home_data(scene)
    # Gripper pointing straight down (fingers along the gripper body's -z), tip ~6 cm up,
    # in front of the base (+x) midway between paper (+y) and square (-y).
    assert d.body("gripper").xmat.reshape(3, 3)[:, 2] @ (0, 0, 1) > 0.99
    tip = d.site("gripperframe").xpos
    assert 0.15 < tip[0] < 0.25 and abs(tip[1]) < 0.01 and 0.05 < tip[2] < 0.07
    np.testing.assert_allclose(d.body("goal").xpos[:2], GOAL_XY)
    np.testing.assert_allclose(d.body("paper").xpos[:2], PAPER_XY)
    # Positive shoulder_pan swings the arm toward -y.
    d.qpos[7] = 0.5
    mujoco.mj_forward(scene, d)
    assert d.site("gripperframe").xpos[1] < -0.05
    # top_view looks straight down with image up (camera y) along +x.
    cam = d.camera("top_view").xmat.reshape(3, 3)
    np.testing.assert_allclose(cam[:, 2], (0, 0, 1), atol=1e-12)  # camera looks along its -z
    np.testing.assert_allclose(cam[:, 1], (1, 0, 0), atol=1e-12)


def test_names_the_env_relies_on(scene):
    for name in (*ARM_JOINTS, "paper_free"):
        assert scene.joint(name).id >= 0
    for name in ("paper", "goal"):
        assert scene.body(name).id >= 0
    for name in ("paper", "tape_px", "tape_nx", "tape_py", "tape_ny", "moving_jaw_tip", "table"):
        assert scene.geom(name).id >= 0
    assert scene.site("gripperframe").id >= 0
    for name in ("top_view", "wrist"):
        assert scene.camera(name).id >= 0
