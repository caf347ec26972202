"""SO-101 paper-in-square: a Gymnasium environment in MuJoCo.

The SO-101 arm must slide a sheet of paper into a red tape square on the table.

    import gymnasium as gym
    import so101_env  # registers SO101PaperSquare-v0
    env = gym.make("SO101PaperSquare-v0")

Rates: physics 360 Hz; a 180 Hz servo loop moves the joint targets linearly toward the
policy's command; the policy acts at 30 Hz (12 physics steps per `step`). Episodes end on
success or after 400 steps.

Action: 6 normalized joint-target deltas in [-1, 1] (shoulder_pan, shoulder_lift, elbow_flex,
wrist_flex, wrist_roll, gripper), times `act_scale` radians, relative to the measured joint
positions (ManiSkill's `pd_joint_delta_pos`): the servo target becomes `q + act_scale * a`, so
a zero action asks the servos to stay where they are and a policy sees the effect of every
command in the next observation.

Observation (25 floats): joint positions (6), joint velocities (6), paper position (3) and
quaternion (4, w x y z), gripper tip position (3), paper-to-goal vector (3). With
`use_image_obs=True` the observation is a dict with that vector under "state" plus
"top_view" and "wrist" RGB images.

Reward: +10 on success, -2 * paper-to-goal distance, -0.1 * orientation error, -0.01 per step;
optionally (`RewardWeights.reach` > 0) minus reach * gripper-to-paper distance until the moving
jaw's tip first touches the paper, when `info["touched_paper"]` reports that touch.
The residual-magnitude penalty of residual RL is added by the training scripts, which are
the only ones that know the residual. Success: all four paper corners inside the tape square
with the paper lying on the table.

Run `python so101_env.py` for a short demo with random actions.
"""

from __future__ import annotations

import ctypes.util
import dataclasses
import math
import os
import pathlib
import sys
from dataclasses import dataclass


# What each headless backend needs, for the error raised at the first render when none works.
GL_PACKAGES = {
    "egl": "EGL: a GPU driver with EGL (NVIDIA: libnvidia-gl; others: Mesa's libegl1 with libgl1-mesa-dri, "
    "which also renders in software)",
    "osmesa": "OSMesa software rendering: the system package libosmesa6 (Debian/Ubuntu: apt-get install -y libosmesa6)",
    "glfw": "GLFW: a display (DISPLAY set) and the glfw library",
}
_gl_problem: str | None = None
"""Why rendering cannot work in this process (set at import when no OpenGL backend can load)."""


def _egl_can_create_display() -> bool:
    """True when libEGL initializes a device display, as MuJoCo's EGL backend does: a GPU driver or
    Mesa's software device. Asked through ctypes, so nothing of OpenGL is imported if it fails."""
    name = ctypes.util.find_library("EGL")
    if name is None:
        return False
    try:
        egl = ctypes.CDLL(name)
        egl.eglGetProcAddress.restype = ctypes.c_void_p
        egl.eglGetProcAddress.argtypes = [ctypes.c_char_p]
        query = egl.eglGetProcAddress(b"eglQueryDevicesEXT")
        get_display = egl.eglGetProcAddress(b"eglGetPlatformDisplayEXT")
        if not query or not get_display:
            return False
        query_devices = ctypes.CFUNCTYPE(ctypes.c_uint, ctypes.c_int, ctypes.POINTER(ctypes.c_void_p),
                                         ctypes.POINTER(ctypes.c_int))(query)
        platform_display = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p)(get_display)
        egl.eglInitialize.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
        egl.eglTerminate.argtypes = [ctypes.c_void_p]
        devices, count = (ctypes.c_void_p * 8)(), ctypes.c_int()
        if not query_devices(8, devices, ctypes.byref(count)):
            return False
        for device in devices[: count.value]:
            display = platform_display(0x313F, device, None)  # EGL_PLATFORM_DEVICE_EXT
            if display and egl.eglInitialize(display, None, None):
                egl.eglTerminate(display)
                return True
    except (OSError, AttributeError):
        pass
    return False


def _backend_problem(backend: str) -> str | None:
    """Why `backend` cannot load here, or None when it can (as far as can be told without importing it)."""
    if backend in ("disable", "disabled", "off", "false", "0"):
        return f"rendering is switched off by MUJOCO_GL={backend}"
    if backend == "egl":
        return None if _egl_can_create_display() else "EGL could not initialize a display"
    if backend == "osmesa":
        return None if ctypes.util.find_library("OSMesa") else "the OSMesa library (libOSMesa) is not installed"
    if backend in ("glfw", "glx", ""):
        return None
    return f"MUJOCO_GL={backend!r} is not a MuJoCo OpenGL backend (use egl, osmesa or glfw)"


def _choose_gl_backend() -> None:
    """Pick MuJoCo's OpenGL backend before mujoco is imported, so that importing and stepping the
    env never depend on OpenGL: only a render can fail, with `_gl_problem` as its message.

    A user's MUJOCO_GL wins (if it cannot load, rendering fails and nothing else does); a display
    means GLFW; headless, EGL where it can create a display (a GPU driver or Mesa's software EGL),
    else OSMesa, else none. The choice is left in the environment for child processes."""
    global _gl_problem
    if "mujoco" in sys.modules:  # too late to choose: mujoco read MUJOCO_GL when it was imported
        if "MUJOCO_GL" not in os.environ and not os.environ.get("DISPLAY"):
            # It would try GLFW, which aborts the process without a display: refuse to render instead.
            _gl_problem = ("mujoco was imported before so101_env, with no MUJOCO_GL and no display, so it would try "
                           "GLFW; import so101_env before mujoco, or set MUJOCO_GL=egl (or osmesa) before Python starts")
        return
    requested = os.environ.get("MUJOCO_GL")
    if requested == "disable" and os.environ.get("SO101_GL_PROBLEM"):  # a parent process found none
        _gl_problem = os.environ["SO101_GL_PROBLEM"]
    elif requested is not None:
        problem = _backend_problem(requested.lower().strip())
        if problem:
            _gl_problem = f"{problem}. MUJOCO_GL={requested} needs {GL_PACKAGES.get(requested.lower().strip(), 'a valid backend name')}"
    elif os.environ.get("DISPLAY"):
        return
    elif not _backend_problem("egl"):
        os.environ["MUJOCO_GL"] = "egl"
    elif not _backend_problem("osmesa"):
        os.environ["MUJOCO_GL"] = "osmesa"
    else:
        _gl_problem = ("no headless OpenGL backend is available: install one of\n  "
                       + "\n  ".join(GL_PACKAGES[name] for name in ("osmesa", "egl"))
                       + "\nor set MUJOCO_GL to a backend that works here")
    if _gl_problem is not None:
        # mujoco imports its GL bindings at import time; a backend that cannot load would break
        # `import mujoco` itself, so import it without rendering and report at the first render.
        os.environ["MUJOCO_GL"] = "disable"
        os.environ["SO101_GL_PROBLEM"] = _gl_problem
    elif os.environ.get("MUJOCO_GL") in ("egl", "osmesa"):
        os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])


_choose_gl_backend()

import gymnasium as gym  # noqa: E402
import mujoco  # noqa: E402
import numpy as np  # noqa: E402

XML_PATH = pathlib.Path(__file__).resolve().parent / "paper_square_realistic.xml"
ENV_ID = "SO101PaperSquare-v0"

JOINT_NAMES = ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper")
CAMERA_NAMES = ("top_view", "wrist")
STATE_DIM = 25
ACTION_DIM = 6

PHYSICS_HZ = 360
CONTROL_HZ = 180
POLICY_HZ = 30
PHYSICS_STEPS_PER_CONTROL = PHYSICS_HZ // CONTROL_HZ  # 2
CONTROL_STEPS_PER_POLICY = CONTROL_HZ // POLICY_HZ  # 6
PHYSICS_STEPS_PER_POLICY = PHYSICS_HZ // POLICY_HZ  # 12

# Nominal paper centre; the square's centre comes from the `goal` body of the XML.
PAPER_NOMINAL_XY = np.array([0.20, 0.11])
TAPE_WIDTH = 0.02
# Paper counts as "on the table" when its centre is this low and its normal this vertical.
ON_TABLE_MAX_HEIGHT = 0.004
ON_TABLE_MIN_NORMAL_Z = 0.98
# Nothing in this scene moves the sheet this fast (a fall from the table reaches 4 m/s); a 5 g sheet
# pinched by the jaw was seen leaving at km/s with every number finite, unseen by MuJoCo's checks.
MAX_PAPER_SPEED = 20.0
MAX_IMAGE_SIZE = 480
"""pixels: the cameras render square images into the scene's 640 x 480 offscreen framebuffer"""
MAX_EPISODE_STEPS = 100_000
"""about 55 minutes at 30 Hz; the task takes seconds"""
MAX_REWARD_WEIGHT = 1000.0
"""100 times the largest default weight (success: 10)"""


@dataclass(frozen=True)
class RewardWeights:
    """Weights of the task reward: success * success - distance * d - orientation * e - time
    (- reach * gripper-to-paper distance before the first touch, when reach > 0)."""

    success: float = 10.0
    distance: float = 2.0
    orientation: float = 0.1
    time: float = 0.01
    reach: float = 0.0
    """weight of the gripper-to-paper distance penalty, applied before the gripper first touches the
    paper: reach * |gripper tip - paper centre| (metres) is subtracted on every step until the first
    step that ends with the moving jaw's tip on the paper. 0 (the default) leaves the reward as it was."""

    def __post_init__(self):
        for field in dataclasses.fields(self):  # the signs are in the formula: every weight is >= 0
            weight = getattr(self, field.name)
            if not 0 <= weight <= MAX_REWARD_WEIGHT:  # also refuses NaN
                raise ValueError(f"RewardWeights.{field.name} must be a finite number >= 0 and <= {MAX_REWARD_WEIGHT}, "
                                 f"got {weight}")


@dataclass(frozen=True)
class Randomization:
    """Per-reset domain randomization ranges (uniform, symmetric)."""

    paper_xy: float = 0.05
    """paper position offset from nominal, metres, per axis; the env refuses one that could put the paper off the table"""
    paper_yaw: float = 0.3
    """paper yaw, radians, within [0, pi]"""
    friction: float = 0.2
    """relative change of the paper-table friction, within [0, 1)"""
    mass: float = 0.1
    """relative change of the paper mass, within [0, 1)"""

    def __post_init__(self):
        if not 0 <= self.paper_xy < math.inf:  # also refuses NaN
            raise ValueError(f"Randomization.paper_xy must be a finite number >= 0 (metres), got {self.paper_xy}")
        if not 0 <= self.paper_yaw <= math.pi:
            raise ValueError(f"Randomization.paper_yaw must be a finite number within [0, {math.pi:.4f}] (radians), "
                             f"got {self.paper_yaw}")
        for name in ("friction", "mass"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"Randomization.{name} must be within [0, 1) (a relative change: 1 could draw a zero "
                                 f"{name}), got {getattr(self, name)}")


MAX_RANDOMIZATION_SCALE = 3.0
"""Largest --randomization-scale: at 3 the paper's centre can start 0.44 m from the arm's base,
near the edge of its ~0.46 m reach on the table; beyond, failures would measure reach, not robustness."""


def scaled_randomization(scale: float) -> Randomization:
    """The env's default randomization ranges, all four multiplied by `scale`."""
    default = Randomization()
    return dataclasses.replace(default, **{f.name: scale * getattr(default, f.name) for f in dataclasses.fields(default)})


def max_paper_offset(model: mujoco.MjModel) -> float:
    """The largest `Randomization.paper_xy` (metres) that keeps every corner of the sheet on the table, whatever its yaw."""
    table = model.geom("table")
    corner = float(np.hypot(*model.geom("paper").size[:2]))  # a corner at any yaw: half the sheet's diagonal
    return float(np.min(table.size[:2] - np.abs(PAPER_NOMINAL_XY - table.pos[:2]) - corner))


def randomization_problems(scale: float) -> list[str]:
    """Why a --randomization-scale cannot give valid episodes: a zero or negative friction or mass could
    be drawn, or the paper could start off the table (whatever its yaw). Empty when it is fine."""
    default = Randomization()
    problems = []
    for field, what in (("friction", "paper-table friction"), ("mass", "paper mass")):
        if scale * getattr(default, field) >= 1:  # a draw of 1 - range would be <= 0
            problems.append(
                f"--randomization-scale {scale} widens the {what} range to +-{scale * getattr(default, field):.0%}, so a "
                f"reset could draw a zero or negative {what}; use a scale below {1 / getattr(default, field):.3g}")
    model = mujoco.MjModel.from_xml_path(str(XML_PATH))  # the scene alone, a few milliseconds
    if scale * default.paper_xy > max_paper_offset(model):
        table = model.geom("table").size
        problems.append(
            f"--randomization-scale {scale} puts the paper up to {100 * scale * default.paper_xy:.1f} cm from its nominal "
            f"position, so a corner could start off the {2 * table[0]:.2f} x {2 * table[1]:.2f} m table; "
            f"use a smaller scale")
    return problems


def describe_randomization(r: Randomization) -> str:
    return (f"paper position +-{100 * r.paper_xy:.1f} cm, yaw +-{r.paper_yaw:.2f} rad, "
            f"friction +-{r.friction:.0%}, mass +-{r.mass:.0%}")


class SO101PaperSquareEnv(gym.Env):
    """Slide a sheet of paper into a red tape square with the SO-101 arm."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": POLICY_HZ}

    def __init__(
        self,
        render_mode: str | None = None,
        use_image_obs: bool = False,
        image_size: int = 224,
        tape_half_size: float = 0.08,
        act_scale: float = 0.02,
        max_episode_steps: int = 400,
        randomize: bool = True,
        randomization: Randomization = Randomization(),
        reward_weights: RewardWeights = RewardWeights(),
        xml_path: str | os.PathLike = XML_PATH,
    ):
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        if not 0 < act_scale <= 0.2:  # also refuses NaN
            raise ValueError(f"act_scale must be within (0, 0.2] radians per unit action, got {act_scale}")
        if not (isinstance(max_episode_steps, (int, np.integer)) and 1 <= max_episode_steps <= MAX_EPISODE_STEPS):
            raise ValueError(f"max_episode_steps must be an integer within [1, {MAX_EPISODE_STEPS}], got {max_episode_steps}")
        if not (isinstance(image_size, (int, np.integer)) and 16 <= image_size <= MAX_IMAGE_SIZE):
            raise ValueError(f"image_size must be an integer within [16, {MAX_IMAGE_SIZE}] pixels (the scene's offscreen "
                             f"framebuffer is 640 x 480), got {image_size}")
        if not isinstance(reward_weights, RewardWeights) or not isinstance(randomization, Randomization):
            raise ValueError(f"reward_weights must be a RewardWeights and randomization a Randomization, got "
                             f"{type(reward_weights).__name__} and {type(randomization).__name__}")
        self.render_mode = render_mode
        self.use_image_obs = use_image_obs
        self.image_size = image_size
        self.act_scale = act_scale
        self.max_episode_steps = max_episode_steps
        self.randomize = randomize
        self.randomization = randomization
        self.reward_weights = reward_weights

        self.model = mujoco.MjModel.from_xml_path(str(xml_path))
        self.data = mujoco.MjData(self.model)
        m = self.model
        if randomization.paper_xy > max_paper_offset(m):
            raise ValueError(f"Randomization.paper_xy {randomization.paper_xy} m: the paper could start off the table "
                             f"(it stays on up to {max_paper_offset(m):.3f} m); use a smaller offset")
        joint_ids = [m.joint(name).id for name in JOINT_NAMES]
        # The arm joints are consecutive in the model; slices keep the hot path cheap.
        self._arm_qpos = slice(m.jnt_qposadr[joint_ids[0]], m.jnt_qposadr[joint_ids[0]] + ACTION_DIM)
        self._arm_qvel = slice(m.jnt_dofadr[joint_ids[0]], m.jnt_dofadr[joint_ids[0]] + ACTION_DIM)
        assert list(m.jnt_qposadr[joint_ids]) == list(range(self._arm_qpos.start, self._arm_qpos.stop))
        self._joint_low = m.jnt_range[joint_ids, 0].copy()
        self._joint_high = m.jnt_range[joint_ids, 1].copy()
        paper_joint = m.joint("paper_free").id
        self._paper_qpos_adr = m.jnt_qposadr[paper_joint]
        self._paper_linear_qvel = slice(m.jnt_dofadr[paper_joint], m.jnt_dofadr[paper_joint] + 3)
        self._paper_body = m.body("paper").id
        self._paper_half_extents = m.geom("paper").size[:2].copy()
        self._paper_rest_height = m.geom("paper").size[2]
        self._tip_site = m.site("gripperframe").id
        self._jaw_tip_geom = m.geom("moving_jaw_tip").id
        self._paper_geom = m.geom("paper").id
        self._goal_body = m.body("goal").id
        self._tape_geoms = [m.geom(f"tape_{side}").id for side in ("px", "nx", "py", "ny")]
        self._pair_friction_nominal = m.pair_friction[0].copy()
        self._paper_mass_nominal = m.body_mass[self._paper_body]
        self._paper_inertia_nominal = m.body_inertia[self._paper_body].copy()
        # Arm pose at reset, from the scene's `home` keyframe: tip above the table between paper
        # and square, gripper pointing down.
        self._home_key = m.key("home").id
        self.home_qpos = m.key_qpos[self._home_key][self._arm_qpos].copy()
        self._interpolation = np.arange(1, CONTROL_STEPS_PER_POLICY + 1)[:, None] / CONTROL_STEPS_PER_POLICY

        mujoco.mj_forward(m, self.data)
        self.goal_xy = self.data.xpos[self._goal_body][:2].copy()
        # Where the paper centre rests when it lies in the middle of the square.
        self._goal_position = np.array([*self.goal_xy, self._paper_rest_height])
        self.tape_half_size = tape_half_size
        self.set_tape_half_size(tape_half_size)

        state_space = gym.spaces.Box(-np.inf, np.inf, shape=(STATE_DIM,), dtype=np.float32)
        if use_image_obs:
            image_space = gym.spaces.Box(0, 255, shape=(image_size, image_size, 3), dtype=np.uint8)
            self.observation_space = gym.spaces.Dict(
                {"state": state_space, **{name: image_space for name in CAMERA_NAMES}}
            )
        else:
            self.observation_space = state_space
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(ACTION_DIM,), dtype=np.float32)

        self._renderer: mujoco.Renderer | None = None
        self._target = self.home_qpos.copy()
        self._steps: int | None = None  # None until the first reset
        self._touched_paper = False
        """Whether the moving jaw's tip has touched the paper in this episode (tracked only when reward_weights.reach > 0)."""
        self.unstable_episodes = 0
        """Count of episodes truncated because the simulation blew up (NaN or MuJoCo warning)."""

    # ------------------------------------------------------------------ task geometry
    def set_tape_half_size(self, half_size: float) -> None:
        """Resize the tape square (inner half-size in metres); used by size curricula."""
        if not 0.02 <= half_size <= 0.3:
            raise ValueError(f"tape_half_size must be within [0.02, 0.3] m, got {half_size}")
        self.tape_half_size = float(half_size)
        mid = half_size + TAPE_WIDTH / 2
        outer = half_size + TAPE_WIDTH
        layout = {  # geom -> (centre x, centre y, half-size x, half-size y)
            self._tape_geoms[0]: (mid, 0.0, TAPE_WIDTH / 2, outer),
            self._tape_geoms[1]: (-mid, 0.0, TAPE_WIDTH / 2, outer),
            self._tape_geoms[2]: (0.0, mid, outer, TAPE_WIDTH / 2),
            self._tape_geoms[3]: (0.0, -mid, outer, TAPE_WIDTH / 2),
        }
        for geom, (x, y, sx, sy) in layout.items():
            self.model.geom_pos[geom][:2] = (x, y)
            self.model.geom_size[geom][:2] = (sx, sy)

    def _task_status(self) -> tuple[bool, float, float]:
        """(success, distance of paper centre to square centre in xy, yaw error in rad)."""
        # Scalar arithmetic on purpose: this runs every step and numpy's per-call overhead
        # would cost more than the maths.
        d = self.data
        r00, r01, _, r10, r11, _, _, _, r22 = d.xmat[self._paper_body]
        x, y, z = d.xpos[self._paper_body]
        dx, dy = x - self.goal_xy[0], y - self.goal_xy[1]
        distance = math.hypot(dx, dy)
        # A rectangle looks the same after a half turn, so yaw error lives in [0, pi/2].
        yaw = math.atan2(r10, r00)
        orientation_error = abs((yaw + math.pi / 2) % math.pi - math.pi / 2)
        on_table = z < ON_TABLE_MAX_HEIGHT and r22 > ON_TABLE_MIN_NORMAL_Z
        # The corner farthest out along x (or y) sticks out by |R00| a + |R01| b.
        a, b = self._paper_half_extents
        h = self.tape_half_size
        inside = abs(dx) + a * abs(r00) + b * abs(r01) <= h and abs(dy) + a * abs(r10) + b * abs(r11) <= h
        return bool(on_table and inside), distance, orientation_error

    def task_reward(self, success: bool, distance: float, orientation_error: float) -> float:
        w = self.reward_weights
        return w.success * success - w.distance * distance - w.orientation * orientation_error - w.time

    def reach_penalty(self, tip_to_paper: float, touched_paper: bool) -> float:
        """The reach-shaping term subtracted from the reward: reach * tip-to-paper distance (metres)
        until the jaw tip has touched the paper, then nothing (the task reward takes over)."""
        return 0.0 if touched_paper else self.reward_weights.reach * tip_to_paper

    def _jaw_tip_touches_paper(self) -> bool:
        """Whether a contact of the last physics step is between the moving jaw's tip and the paper."""
        contacts = self.data.contact  # the active contacts only (ncon of them)
        jaw, paper = self._jaw_tip_geom, self._paper_geom
        for g1, g2 in zip(contacts.geom1, contacts.geom2):
            if (g1 == jaw and g2 == paper) or (g1 == paper and g2 == jaw):
                return True
        return False

    def _tip_to_paper(self) -> float:
        """Distance in metres from the gripper tip (the `gripperframe` site) to the paper's centre."""
        tx, ty, tz = self.data.site_xpos[self._tip_site]
        px, py, pz = self.data.xpos[self._paper_body]
        return math.sqrt((tx - px) ** 2 + (ty - py) ** 2 + (tz - pz) ** 2)

    # ------------------------------------------------------------------ gym API
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        m, d = self.model, self.data
        mujoco.mj_resetDataKeyframe(m, d, self._home_key)  # arm at home, servos holding it
        r = self.randomization if self.randomize else Randomization(0.0, 0.0, 0.0, 0.0)
        rng = self.np_random
        offset = rng.uniform(-r.paper_xy, r.paper_xy, size=2)
        yaw = rng.uniform(-r.paper_yaw, r.paper_yaw)
        friction_scale = 1.0 + rng.uniform(-r.friction, r.friction)
        mass_scale = 1.0 + rng.uniform(-r.mass, r.mass)

        m.pair_friction[0] = self._pair_friction_nominal * friction_scale
        m.body_mass[self._paper_body] = self._paper_mass_nominal * mass_scale
        m.body_inertia[self._paper_body] = self._paper_inertia_nominal * mass_scale
        pq = self._paper_qpos_adr
        d.qpos[pq : pq + 2] = PAPER_NOMINAL_XY + offset
        d.qpos[pq + 2] = self._paper_rest_height
        d.qpos[pq + 3 : pq + 7] = (np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2))
        self._target = self.home_qpos.copy()
        self._steps = 0
        self._touched_paper = False
        mujoco.mj_forward(m, d)

        info = {
            "paper_offset": offset,
            "paper_yaw": yaw,
            "friction_scale": friction_scale,
            "mass_scale": mass_scale,
        }
        return self._observation(), info

    def step(self, action):
        if self._steps is None:
            raise RuntimeError("call reset() before step(): the episode has not started")
        action = np.asarray(action, dtype=np.float64)
        if action.shape != (ACTION_DIM,):
            raise ValueError(
                f"action must have shape ({ACTION_DIM},) (one normalized delta per joint: "
                f"{', '.join(JOINT_NAMES)}), got shape {action.shape}"
            )
        if not math.isfinite(action.sum()):  # any NaN or inf makes the sum non-finite
            raise ValueError(f"action contains NaN or inf: {action}; check the policy outputs")
        action = np.minimum(np.maximum(action, -1.0), 1.0)  # np.clip costs 5x more per call

        m, d = self.model, self.data
        previous = self._target
        target = np.minimum(np.maximum(d.qpos[self._arm_qpos] + action * self.act_scale, self._joint_low), self._joint_high)
        self._target = target
        for ctrl in previous + self._interpolation * (target - previous):
            d.ctrl[:] = ctrl
            mujoco.mj_step(m, d, nstep=PHYSICS_STEPS_PER_CONTROL)
        mujoco.mj_kinematics(m, d)
        self._steps += 1

        if self._simulation_diverged():
            # Start over from a clean state so the returned observation is finite, and let
            # the learner bootstrap from it as from any truncation.
            self.unstable_episodes += 1
            touched = self._touched_paper
            obs, _ = self.reset()
            # No distance was measured: NaN, so that no average mistakes the blow-up for a success.
            info = {"success": False, "dist_to_goal": math.nan, "orientation_error": math.nan, "sim_unstable": True}
            if self.reward_weights.reach:
                info["touched_paper"] = touched
            return obs, 0.0, False, True, info

        success, distance, orientation_error = self._task_status()
        reward = self.task_reward(success, distance, orientation_error)
        truncated = self._steps >= self.max_episode_steps and not success
        info = {"success": success, "dist_to_goal": distance, "orientation_error": orientation_error}
        if self.reward_weights.reach:
            # Only with the term on: at reach == 0 the step computes exactly what it always did, and
            # pays nothing for a contact search. Once touched, the search stops for the episode.
            if not self._touched_paper:
                self._touched_paper = self._jaw_tip_touches_paper()
                reward -= self.reach_penalty(self._tip_to_paper(), self._touched_paper)
            info["touched_paper"] = self._touched_paper
        return self._observation(), reward, success, truncated, info

    def _simulation_diverged(self) -> bool:
        # MuJoCo checks positions, velocities and accelerations every step; on a NaN or a
        # blow-up it raises a warning counter (reset with the data) and resets the state.
        # A flung sheet stays finite, so its speed is checked here.
        velocity = self.data.qvel[self._paper_linear_qvel]
        return bool(self.data.warning.number.any()) or not velocity @ velocity <= MAX_PAPER_SPEED**2

    def _state(self) -> np.ndarray:
        d = self.data
        pq = self._paper_qpos_adr
        return np.concatenate(
            [
                d.qpos[self._arm_qpos],
                d.qvel[self._arm_qvel],
                d.qpos[pq : pq + 7],
                d.site_xpos[self._tip_site],
                self._goal_position - d.qpos[pq : pq + 3],
            ],
            dtype=np.float32,
        )

    def _observation(self):
        state = self._state()
        if not self.use_image_obs:
            return state
        return {"state": state, **self.render_cameras()}

    # ------------------------------------------------------------------ rendering
    def _get_renderer(self) -> mujoco.Renderer:
        if self._renderer is None:
            if _gl_problem is not None:
                raise RuntimeError(_rendering_help(None))
            try:
                self._renderer = mujoco.Renderer(self.model, self.image_size, self.image_size)
            except Exception as error:  # the GL backends raise several unrelated types
                raise RuntimeError(_rendering_help(error)) from error
        return self._renderer

    def render_cameras(self) -> dict[str, np.ndarray]:
        """RGB images (image_size x image_size x 3, uint8) from the top_view and wrist cameras."""
        renderer = self._get_renderer()
        images = {}
        for name in CAMERA_NAMES:
            renderer.update_scene(self.data, camera=name)
            images[name] = renderer.render().copy()
        return images

    def render(self):
        """Dual-camera frame: top view and wrist view side by side (H x 2H x 3, uint8)."""
        if self.render_mode != "rgb_array":
            return None
        images = self.render_cameras()
        return np.concatenate([images["top_view"], images["wrist"]], axis=1)

    def close(self):
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None


def _rendering_help(error: Exception | None) -> str:
    if _gl_problem is not None:
        return f"MuJoCo cannot render in this process: {_gl_problem}."
    backend = os.environ.get("MUJOCO_GL", "glfw")
    hint = GL_PACKAGES.get(backend, "a valid backend name: egl, osmesa or glfw")
    if backend == "osmesa" or backend == "egl":
        hint += "; or set MUJOCO_GL to the other headless backend"
    return f"MuJoCo could not create an offscreen renderer with MUJOCO_GL={backend} ({error}); it needs {hint}."


if ENV_ID not in gym.registry:
    gym.register(id=ENV_ID, entry_point=f"{__name__}:SO101PaperSquareEnv")


if __name__ == "__main__":
    import time

    # A short demo with random joint-delta actions: the env, its reward and its speed. For a policy
    # that does the task, see `python eval_policy.py --base-policy jacobian`.
    env = SO101PaperSquareEnv()
    for episode in range(3):
        obs, _ = env.reset(seed=episode)
        total, start = 0.0, time.perf_counter()
        for step in range(env.max_episode_steps):
            obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
            total += reward
            if terminated or truncated:
                break
        print(
            f"episode {episode}: success={info['success']} return={total:.2f} steps={step + 1} "
            f"final_distance={info['dist_to_goal']:.3f} m  ({(step + 1) / (time.perf_counter() - start):.0f} steps/s)"
        )
