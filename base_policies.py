"""Base policies for residual RL, behind one batched interface.

A base policy maps the observations of N environments to N normalized actions in [-1, 1]
(the environment's joint-delta action) and keeps per-environment memory that can be reset:

    base = make_base_policy("jacobian", num_envs=8)
    base.reset()                                    # all envs; base.reset(mask) resets some
    base_action = base.act(states, images)          # states: (8, 25) -> (8, 6)
    action = compose_action(base_action, residual, alpha)
    policy = ResidualPolicy(base, residual_mean, alpha)  # the same, as one policy (evaluation)

Every base has the same `act(states, images=None)`; `images` are the camera images of the envs,
rendered only on the steps where `images_needed()` asks for them (vision bases; `camera_images`
does that), and state-based bases ignore them. A base runs in the training process over the
whole batch (not inside each env worker), so one instance - one GR00T model on one GPU - serves
every environment.

Bases: zero, jacobian, il (bc_policy.py), hybrid; groot_base.py adds groot when imported.
"""

from __future__ import annotations

from collections.abc import Callable

import so101_env  # noqa: I001  first: it picks the headless OpenGL backend before mujoco loads

import mujoco
import numpy as np

from action_chunks import ActionChunkQueue
from bc_policy import load_bc_checkpoint
from so101_env import ACTION_DIM, JOINT_NAMES, STATE_DIM

# Slices of the 25-float state vector (see so101_env).
QPOS = slice(0, 6)
QVEL = slice(6, 12)
PAPER_POS = slice(12, 15)
PAPER_QUAT = slice(15, 19)
TIP_POS = slice(19, 22)
PAPER_TO_GOAL = slice(22, 25)


def compose_action(base_action: np.ndarray, residual: np.ndarray, alpha: float) -> np.ndarray:
    """`base + alpha * residual`, clipped to the environment's action range."""
    return np.clip(base_action + alpha * residual, -1.0, 1.0)


class ResidualPolicy:
    """A residual on top of its base, deterministic: `base + alpha * residual_mean(states, base_action)`. With
    `flow_start` (states (N, 25) -> flow starts (N, horizon, 6), a noise policy's mean), a GR00T base starts the
    flow of each new chunk there (GR00TBasePolicy.act's `flow_start`)."""

    def __init__(self, base: BasePolicy, residual_mean: Callable[[np.ndarray, np.ndarray], np.ndarray], alpha: float,
                 name: str | None = None, flow_start: Callable[[np.ndarray], np.ndarray] | None = None):
        self.base, self.residual_mean, self.alpha, self.flow_start = base, residual_mean, alpha, flow_start
        self.act_scale, self.needs_images = base.act_scale, base.needs_images
        self.name = name or f"residual+{base.name}"

    def reset(self, mask: np.ndarray | None = None) -> None:
        self.base.reset(mask)

    def images_needed(self) -> np.ndarray:
        return self.base.images_needed()

    def act(self, states: np.ndarray, images: dict[str, np.ndarray] | None = None) -> np.ndarray:
        if self.flow_start is not None and self.base.images_needed().any():
            base_action = self.base.act(states, images, self.flow_start(states))
        else:
            base_action = self.base.act(states, images)
        action = compose_action(base_action, self.residual_mean(states, base_action), self.alpha)
        self.base.executed(action)
        return action


def camera_images(policy, render: Callable[[], list[dict]]) -> dict[str, np.ndarray] | None:
    """The `images` argument of `policy.act`: rendered only when some env's next action needs them.

    `render()` returns one {camera: (H, W, 3) image} dict per env, e.g.
    `lambda: envs.call("render_cameras")` or `lambda: [env.render_cameras()]`."""
    if not policy.images_needed().any():
        return None
    per_env = render()
    return {camera: np.stack([frames[camera] for frames in per_env]) for camera in per_env[0]}


class BasePolicy:
    """Batched base policy: `act` maps (N, 25) states to (N, 6) normalized actions."""

    name = "base"
    needs_images = False
    """True when `act` also needs camera images (vision bases such as GR00T)."""

    def __init__(self, num_envs: int, act_scale: float = 0.02):
        if num_envs < 1:
            raise ValueError(f"num_envs must be at least 1, got {num_envs}")
        self.num_envs = num_envs
        self.act_scale = act_scale
        """radians per unit of normalized action: how the env scales what `act` returns"""

    def reset(self, mask: np.ndarray | None = None) -> None:
        """Forget the memory of the envs where `mask` is True (all envs when None)."""

    def act(self, states: np.ndarray, images: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """(N, 25) states -> (N, 6) actions. `images`, {camera: (N, H, W, 3) uint8}, are needed by
        vision bases on the steps where `images_needed()` has a True; other bases ignore them."""
        raise NotImplementedError

    def executed(self, actions: np.ndarray) -> None:
        """Told the (N, 6) actions the envs executed after the last `act` (base + alpha * residual,
        clipped); bases that plan ahead may keep the correction (the groot base can), others ignore it."""

    def images_needed(self) -> np.ndarray:
        """Boolean mask of the envs whose next `act` reads camera images (none for state-based bases)."""
        return np.zeros(self.num_envs, dtype=bool)

    def config(self) -> dict:
        """What is needed to rebuild this base; stored in residual checkpoints."""
        return {"name": self.name, "act_scale": self.act_scale}

    def _check_states(self, states: np.ndarray) -> np.ndarray:
        states = np.asarray(states, dtype=np.float64)
        if states.shape != (self.num_envs, STATE_DIM):
            raise ValueError(
                f"{self.name} base expects states of shape ({self.num_envs}, {STATE_DIM}), got {states.shape}"
            )
        return states


class ZeroBasePolicy(BasePolicy):
    """Always zero: with alpha = 1 the residual is the whole policy (pure RL)."""

    name = "zero"

    def act(self, states: np.ndarray, images: dict[str, np.ndarray] | None = None) -> np.ndarray:
        return np.zeros((self._check_states(states).shape[0], ACTION_DIM), dtype=np.float32)


class JacobianBasePolicy(BasePolicy):
    """Scripted press-and-drag controller with damped-least-squares IK on the gripper tip.

    Per env, a small state machine:
      approach: move the tip above the paper centre at `hover_height`;
      press:    lower the tip onto the paper centre;
      drag:     keep pressing and move the tip so the paper centre goes to the square centre;
      lift:     raise the tip again when the paper slipped away from under it or is in place.
    The tip is pressed at the paper centre so dragging alone does not turn the sheet; during the
    drag the wrist twists to undo the sheet's yaw (the pressed rubber tip grips in torsion).

    Kinematics come from the joint positions in the observation and a private copy of the
    scene model; the IK keeps the gripper pointing down while it tracks the tip target.
    """

    name = "jacobian"
    APPROACH, PRESS, DRAG, LIFT = range(4)

    def __init__(
        self,
        num_envs: int,
        act_scale: float = 0.02,
        hover_height: float = 0.03,
        press_height: float = 0.0035,
        contact_height: float = 0.006,
        press_dwell: int = 5,
        drag_step: float = 0.006,
        max_tip_step: float = 0.008,
        place_tolerance: float = 0.003,
        slip_distance: float = 0.02,
        damping: float = 0.02,
        pointing_weight: float = 0.1,
        yaw_gain: float = 0.1,
    ):
        super().__init__(num_envs, act_scale)
        self.hover_height = hover_height
        self.press_height = press_height
        self.contact_height = contact_height
        self.press_dwell = press_dwell
        self.drag_step = drag_step
        self.max_tip_step = max_tip_step
        self.place_tolerance = place_tolerance
        self.slip_distance = slip_distance
        self.damping = damping
        self.pointing_weight = pointing_weight
        self.yaw_gain = yaw_gain

        self.model = mujoco.MjModel.from_xml_path(str(so101_env.XML_PATH))
        self.data = mujoco.MjData(self.model)
        m = self.model
        joint_ids = [m.joint(name).id for name in JOINT_NAMES]
        self._qpos_idx = np.array([m.jnt_qposadr[j] for j in joint_ids])
        # IK moves the four joints that place and point the tip; roll and gripper hold.
        self._ik_dofs = np.array([m.jnt_dofadr[j] for j in joint_ids[:4]])
        self._roll_dof = m.jnt_dofadr[joint_ids[4]]
        self._tip_site = m.site("gripperframe").id
        self._press_geom = m.geom("moving_jaw_tip").id
        self._paper_top = m.geom("paper").size[2] * 2
        self._home_gripper = m.key("home").qpos[self._qpos_idx[5]]
        self.phase = np.full(num_envs, self.APPROACH)
        self.press_steps = np.zeros(num_envs, dtype=int)

    def reset(self, mask: np.ndarray | None = None) -> None:
        envs = slice(None) if mask is None else np.asarray(mask, dtype=bool)
        self.phase[envs] = self.APPROACH
        self.press_steps[envs] = 0

    def act(self, states: np.ndarray, images: dict[str, np.ndarray] | None = None) -> np.ndarray:
        states = self._check_states(states)
        q = states[:, QPOS]
        tip, pointing, jac_pos, jac_rot, pad_xy, roll_turns_yaw = self._kinematics(q)
        # The sheet is touched by the moving jaw's tip, a few millimetres from the tip site:
        # aim the site so that this contact lands on the paper centre.
        paper_xy = states[:, PAPER_POS][:, :2] - (pad_xy - tip[:, :2])
        to_goal = states[:, PAPER_TO_GOAL][:, :2]
        goal_distance = np.linalg.norm(to_goal, axis=1)
        tip_to_paper = np.linalg.norm(paper_xy - tip[:, :2], axis=1)
        tip_z = tip[:, 2]
        press_z = self._paper_top + self.press_height

        # Phase transitions, all envs at once.
        old = self.phase
        self.press_steps[old != self.PRESS] = 0
        # Let the press force build up before pulling, or the jaw skids over the sheet.
        pressed = (old == self.PRESS) & (tip_z < self._paper_top + self.contact_height)
        self.press_steps[pressed] += 1
        slipped = tip_to_paper > self.slip_distance
        placed = goal_distance < self.place_tolerance
        phase = old.copy()
        phase[(old == self.APPROACH) & (tip_to_paper < 0.002) & (np.abs(tip_z - self.hover_height) < 0.01)] = self.PRESS
        phase[pressed & (self.press_steps >= self.press_dwell)] = self.DRAG
        phase[(old == self.PRESS) & ~pressed & slipped] = self.LIFT
        phase[(old == self.DRAG) & (slipped | placed)] = self.LIFT
        phase[(old == self.LIFT) & (tip_z > self.hover_height - 0.005) & ~placed] = self.APPROACH
        self.phase = phase

        # Tip targets per phase.
        target = np.empty_like(tip)
        target[:, :2] = paper_xy  # approach and press aim at the paper centre
        target[:, 2] = np.where(tip_to_paper > 0.01, np.maximum(self.hover_height, tip_z), self.hover_height)
        press, drag, lift = phase == self.PRESS, phase == self.DRAG, phase == self.LIFT
        target[press | drag, 2] = press_z
        step = to_goal * np.minimum(1.0, self.drag_step / np.maximum(goal_distance, 1e-9))[:, None]
        target[drag, :2] = tip[drag, :2] + step[drag]
        target[lift, :2] = tip[lift, :2]
        target[lift, 2] = self.hover_height + 0.01

        tip_error = target - tip
        tip_error *= np.minimum(1.0, self.max_tip_step / np.maximum(np.linalg.norm(tip_error, axis=1), 1e-9))[:, None]
        dq = self._ik_step(tip_error, pointing, jac_pos, jac_rot)
        action = np.zeros((len(states), ACTION_DIM))
        # Scale each joint step as a whole (not per joint) so the tip keeps its direction.
        action[:, :4] = dq / np.maximum(self.act_scale, np.abs(dq).max(axis=1))[:, None]
        # The pressed fingertip grips the sheet in torsion too: twisting the wrist turns it.
        yaw_error = _sheet_yaw(states[:, PAPER_QUAT])
        action[drag, 4] = (-self.yaw_gain * yaw_error * roll_turns_yaw / self.act_scale)[drag]
        action[:, 5] = (self._home_gripper - q[:, 5]) / self.act_scale  # keep the jaw where it was designed to touch
        return np.clip(action, -1.0, 1.0).astype(np.float32)

    def _kinematics(self, qs: np.ndarray):
        """Per env: tip position, pointing axis, tip Jacobians of the IK joints, pad xy, roll sign."""
        m, d = self.model, self.data
        n = len(qs)
        tip, pointing, pad_xy = np.empty((n, 3)), np.empty((n, 3)), np.empty((n, 2))
        jac_pos, jac_rot = np.empty((n, 3, m.nv)), np.empty((n, 3, m.nv))
        for i, q in enumerate(qs):
            d.qpos[self._qpos_idx] = q
            mujoco.mj_kinematics(m, d)
            mujoco.mj_comPos(m, d)
            mujoco.mj_jacSite(m, d, jac_pos[i], jac_rot[i], self._tip_site)
            tip[i] = d.site_xpos[self._tip_site]
            pointing[i] = d.site_xmat[self._tip_site].reshape(3, 3)[:, 0]
            pad_xy[i] = d.geom_xpos[self._press_geom][:2]
        # +1 where a positive wrist roll turns the gripper counter-clockwise seen from above.
        roll_turns_yaw = np.where(jac_rot[:, 2, self._roll_dof] < 0, -1.0, 1.0)
        return tip, pointing, jac_pos[:, :, self._ik_dofs], jac_rot[:, :, self._ik_dofs], pad_xy, roll_turns_yaw

    def _ik_step(self, tip_error, pointing, jac_pos, jac_rot) -> np.ndarray:
        """One damped-least-squares step per env toward its tip target, gripper pointing down."""
        # Rotation that turns the pointing axis onto -z: pointing x (0, 0, -1), written out.
        pointing_error = np.stack([-pointing[:, 1], pointing[:, 0], np.zeros(len(pointing))], axis=1)
        w = self.pointing_weight
        jac = np.concatenate([jac_pos, w * jac_rot], axis=1)  # (n, 6, 4)
        error = np.concatenate([tip_error, w * pointing_error], axis=1)
        lhs = jac @ jac.transpose(0, 2, 1) + self.damping**2 * np.eye(6)
        return (jac.transpose(0, 2, 1) @ np.linalg.solve(lhs, error[:, :, None]))[:, :, 0]


def _sheet_yaw(quat_wxyz: np.ndarray) -> np.ndarray:
    """Yaw of flat sheets (..., 4 quaternions) in [-pi/2, pi/2): a rectangle is the same after a half turn."""
    w, x, y, z = np.moveaxis(quat_wxyz, -1, 0)
    yaw = np.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))
    return (yaw + np.pi / 2) % np.pi - np.pi / 2


class ILBasePolicy(BasePolicy):
    """A frozen behaviour-cloning policy (bc_policy.ChunkPolicy, trained by train_bc.py) that predicts chunks of actions.

    Each env runs the first `chunk_steps` actions of a chunk open-loop, then asks for a new one;
    the envs that need one are queried together in one batch. Actions are rescaled when the env's
    `act_scale` differs from the demonstrations', so they move the joints by the same radians.
    """

    name = "il"

    def __init__(self, num_envs: int, act_scale: float = 0.02, checkpoint: str | None = None, chunk_steps: int | None = None):
        super().__init__(num_envs, act_scale)
        if checkpoint is None:
            raise ValueError("the il base needs a BC checkpoint: pass --il-checkpoint PATH (train_bc.py writes one)")
        self.checkpoint = str(checkpoint)
        self.policy, meta = load_bc_checkpoint(checkpoint, STATE_DIM)
        self.chunk_steps = meta["chunk_steps"] if chunk_steps is None else chunk_steps
        if not 1 <= self.chunk_steps <= meta["chunk_size"]:
            raise ValueError(f"chunk_steps must be within [1, {meta['chunk_size']}] for {checkpoint}, got {self.chunk_steps}")
        self.action_gain = meta["act_scale"] / act_scale
        self.queue = ActionChunkQueue(num_envs, self.chunk_steps)

    def reset(self, mask: np.ndarray | None = None) -> None:
        self.queue.reset(mask)

    def act(self, states: np.ndarray, images: dict[str, np.ndarray] | None = None) -> np.ndarray:
        states = self._check_states(states)
        stale = self.queue.needs_chunk()
        if stale.any():
            self.queue.load(stale, self.policy.predict(states[stale]))
        return np.clip(self.queue.pop() * self.action_gain, -1.0, 1.0)

    def config(self) -> dict:
        return {**super().config(), "checkpoint": self.checkpoint, "chunk_steps": self.chunk_steps}


class HybridBasePolicy(BasePolicy):
    """A weighted blend of bases: `sum_i weight_i * member_i.act(states)`, clipped to [-1, 1].

    Members are dicts of a base name, its weight and its own keyword arguments; all share the
    hybrid's `act_scale`. Weights need not sum to 1 (e.g. the full Jacobian plus 0.3 of IL):

        make_base_policy("hybrid", 8, members=[
            {"name": "il", "weight": 0.5, "checkpoint": "checkpoints/bc_jacobian.pt"},
            {"name": "jacobian", "weight": 0.5},
        ])
    """

    name = "hybrid"

    def __init__(self, num_envs: int, act_scale: float = 0.02, members: list[dict] | tuple = ()):
        super().__init__(num_envs, act_scale)
        if len(members) < 2:
            raise ValueError(f"a hybrid base blends two or more bases, got {len(members)}; e.g. 'il:0.5,jacobian:0.5'")
        self.members = []
        for member in members:
            kwargs = dict(member)
            name, weight = kwargs.pop("name"), float(kwargs.pop("weight"))
            if not weight > 0:
                raise ValueError(f"hybrid member {name!r} needs a positive weight, got {weight}")
            self.members.append((weight, make_base_policy(name, num_envs, act_scale=act_scale, **kwargs)))
        self.needs_images = any(base.needs_images for _, base in self.members)

    def reset(self, mask: np.ndarray | None = None) -> None:
        for _, base in self.members:
            base.reset(mask)

    def images_needed(self) -> np.ndarray:
        return np.logical_or.reduce([base.images_needed() for _, base in self.members])

    def act(self, states: np.ndarray, images: dict[str, np.ndarray] | None = None) -> np.ndarray:
        states = self._check_states(states)
        blend = sum(
weight * base.act(states, images) for weight, base in self.members
        )
        return np.clip(blend, -1.0, 1.0).astype(np.float32)

    def config(self) -> dict:
        members = []
        for weight, base in self.members:
            member = {key: value for key, value in base.config().items() if key != "act_scale"}
            members.append({**member, "weight": weight})
        return {**super().config(), "members": members}


def parse_hybrid_spec(spec: str) -> list[dict]:
    """'il:0.5,jacobian:0.5' -> [{'name': 'il', 'weight': 0.5}, {'name': 'jacobian', 'weight': 0.5}]"""
    members = []
    for part in spec.split(","):
        name, _, weight = part.strip().partition(":")
        try:
            members.append({"name": name.strip(), "weight": float(weight)})
        except ValueError:
            raise ValueError(f"bad hybrid member {part!r} in {spec!r}; write name:weight pairs, e.g. 'il:0.5,jacobian:0.5'") from None
    return members


def base_policy_kwargs(name: str, il_checkpoint: str | None = None, hybrid_spec: str | None = None) -> dict:
    """Keyword arguments for `make_base_policy` from the scripts' --il-checkpoint and --hybrid-spec
    flags; the IL checkpoint goes to an il base and to every il member of a hybrid one."""
    if name == "hybrid" and not hybrid_spec:
        raise ValueError("--base-policy hybrid needs --hybrid-spec, e.g. 'il:0.5,jacobian:0.5'")
    members = parse_hybrid_spec(hybrid_spec) if name == "hybrid" else []
    if il_checkpoint is None and (name == "il" or any(m["name"] == "il" for m in members)):
        raise ValueError(f"--base-policy {name} with an il base needs --il-checkpoint PATH (train_bc.py writes one)")
    for member in members:
        if member["name"] == "il":
            member["checkpoint"] = il_checkpoint
    if name == "il":
        return {"checkpoint": il_checkpoint}
    return {"members": members} if name == "hybrid" else {}


BASE_POLICIES: dict[str, type[BasePolicy]] = {
    "zero": ZeroBasePolicy,
    "jacobian": JacobianBasePolicy,
    "il": ILBasePolicy,
    "hybrid": HybridBasePolicy,
}
"""Bases by name. groot_base.py adds "groot" when imported: it brings the GR00T stack with it."""


def make_base_policy(name: str, num_envs: int, **kwargs) -> BasePolicy:
    """Build a base policy by name: one of BASE_POLICIES."""
    if name == "groot" and name not in BASE_POLICIES:
        raise ValueError("the groot base lives in groot_base.py: `import groot_base` before make_base_policy('groot', ...)")
    if name not in BASE_POLICIES:
        raise ValueError(f"unknown base policy {name!r}; choose one of {sorted(BASE_POLICIES)}")
    return BASE_POLICIES[name](num_envs=num_envs, **kwargs)
