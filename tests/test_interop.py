"""Our datasets and checkpoints in the libraries that read them, compared value for value with our own code.
Optional: each test is skipped where its library is absent.

- LeRobot 0.6 (`lerobot`, Python >= 3.12, torch < 2.12): `LeRobotDataset` loads the v3.0 dataset
  `DatasetWriter(version="v3.0")` writes, with PyAV and with torchcodec (which needs FFmpeg's shared
  libraries). `.ci/run` runs this in a venv of its own (its optional LeRobot step).
- Isaac-GR00T N1.5 (not on PyPI; CI has none): point ISAAC_GR00T_N15 at a checkout of its N1.5 code (commit
  4af2b622892f7dcb5aae5a3fb70bcb02dc217b96) in an environment with its dependencies (docs/groot.md says how).
  `LeRobotSingleDataset` with NVIDIA's stock `so100_dualcam` data config loads the v2.1 dataset, with each
  video backend it offers that is installed; with patches/isaac_gr00t_n15_small_checkpoint.patch applied,
  NVIDIA's `Gr00tPolicy` loads the committed small checkpoint and acts as ours does.

For datasets every frame is compared: state, action, episode and frame index, task, and both cameras' pictures
(the library's decode within a few levels of ours, and nearer the frame written with that row than its neighbours).
"""

import importlib
import importlib.util
import os
import pathlib
import sys

import numpy as np
import pytest

from lerobot_dataset import TASK, DatasetWriter, read_frames, read_video_frames

CAMERAS = ("top_view", "wrist")
LENGTHS = (9, 14, 11)
SIZE = 32


def frames_of(episode: int, length: int, camera: int) -> np.ndarray:
    """Smooth pictures (no sharp colour edge for yuv420p to blur) that change from frame to frame: a colour
    ramp brightened by 6 levels a frame, shifted by episode and camera."""
    ramp = np.linspace(0, 80, SIZE)[None, :, None] + np.array([0, 30, 60])[None, None, :]
    frames = [ramp + 6 * t + 5 * episode + 10 * camera for t in range(length)]  # at most 244
    return np.broadcast_to(np.stack(frames), (length, SIZE, SIZE, 3)).astype(np.uint8)  # (T, 1, W, 3): rows alike


def write(root, version: str):
    """A small camera dataset in degrees; returns its root and the pictures written, per episode and camera."""
    rng = np.random.default_rng(0)
    writer = DatasetWriter(root, "degrees", 0.02, {"test": True}, cameras=CAMERAS, version=version)
    written = []
    for episode, length in enumerate(LENGTHS):
        images = {camera: frames_of(episode, length, number) for number, camera in enumerate(CAMERAS)}
        writer.add_episode(rng.uniform(-0.5, 0.5, (length, 25)), rng.uniform(-1, 1, (length, 6)), np.zeros(length), True,
                           images=images)
        written.append(images)
    assert writer.close()
    return root, written


def check_picture(theirs: np.ndarray, ours: np.ndarray, written: np.ndarray, frame: int) -> None:
    """`theirs` (H, W, 3), a library's decode of `frame`, is our reader's within a few levels and is that frame, not a neighbour."""
    theirs = theirs.astype(float)
    assert np.abs(theirs - ours[frame]).mean() < 3
    own = np.abs(theirs - written[frame]).mean()
    for neighbour in (frame - 1, frame + 1):
        if 0 <= neighbour < len(written):
            assert own < np.abs(theirs - written[neighbour]).mean()


@pytest.mark.parametrize("backend", ["pyav", "torchcodec"])
def test_lerobot_loads_our_v3_0_dataset_as_we_read_it(tmp_path, monkeypatch, backend):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # a local dataset: nothing may come from the hub
    try:  # a broken install (torchvision beside another torch) raises ImportError, not ModuleNotFoundError
        from lerobot.datasets import lerobot_dataset
    except ImportError:
        pytest.skip("LeRobot >= 0.4 is not installed")
    if backend == "torchcodec":
        try:
            import torchcodec.decoders  # noqa: F401  loads FFmpeg's shared libraries
        except (ImportError, RuntimeError, OSError):
            pytest.skip("torchcodec or FFmpeg's shared libraries are not installed")
    root, written = write(tmp_path / "v3", "v3.0")
    dataset = lerobot_dataset.LeRobotDataset("so101_sim/interop", root=root, video_backend=backend)
    ours = read_frames(root, ["observation.state", "action", "episode_index", "frame_index"])  # dataset units, as stored
    pictures = {(e, camera): read_video_frames(root, e, camera).astype(float) for e in range(len(LENGTHS)) for camera in CAMERAS}

    assert dataset.meta.info.codebase_version == "v3.0" and dataset.meta.total_episodes == len(LENGTHS)
    assert len(dataset) == sum(LENGTHS) and dataset.meta.video_keys == [f"observation.images.{c}" for c in CAMERAS]
    assert set(dataset.meta.stats["observation.state"]) >= {"min", "max", "mean", "std", "count", "q01", "q99"}
    for row in range(len(dataset)):
        item = dataset[row]
        episode, frame = int(item["episode_index"]), int(item["frame_index"])
        assert (episode, frame) == (ours["episode_index"][row], ours["frame_index"][row])
        for name in ("observation.state", "action"):
            np.testing.assert_array_equal(item[name].numpy(), ours[name][row].astype(np.float32))
        assert item["task"] == TASK
        for camera in CAMERAS:
            picture = item[f"observation.images.{camera}"].numpy().transpose(1, 2, 0) * 255  # (C, H, W) in [0, 1]
            check_picture(picture, pictures[episode, camera], written[episode][camera], frame)


def isaac(name: str):
    """A module of the Isaac-GR00T N1.5 checkout ISAAC_GR00T_N15 names (skips without one, or without its dependencies)."""
    checkout = os.environ.get("ISAAC_GR00T_N15")
    if not checkout:
        pytest.skip("ISAAC_GR00T_N15 does not name an Isaac-GR00T N1.5 checkout")
    if checkout not in sys.path:
        sys.path.append(checkout)
    try:
        return importlib.import_module(name)
    except ImportError as error:
        pytest.skip(f"Isaac-GR00T's dependencies are not installed ({error})")


@pytest.mark.parametrize("backend", ["torchcodec", "decord", "opencv"])
def test_isaac_gr00t_n15_loads_our_v2_1_dataset_as_we_read_it(tmp_path, backend):
    LeRobotSingleDataset = isaac("gr00t.data.dataset").LeRobotSingleDataset
    DATA_CONFIG_MAP = isaac("gr00t.experiment.data_config").DATA_CONFIG_MAP
    module = {"opencv": "cv2"}.get(backend, backend)
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{backend} is not installed")
    root, written = write(tmp_path / "v21", "v2.1")
    config = DATA_CONFIG_MAP["so100_dualcam"]  # NVIDIA's stock config: video.front, video.wrist, single_arm, gripper
    dataset = LeRobotSingleDataset(dataset_path=root, modality_configs=config.modality_config(),
                                   embodiment_tag="new_embodiment", video_backend=backend)
    ours = read_frames(root, ["observation.state", "action", "episode_index", "frame_index"])
    starts = np.cumsum([0, *LENGTHS])

    assert list(dataset.trajectory_ids) == list(range(len(LENGTHS))) and list(dataset.trajectory_lengths) == list(LENGTHS)
    for episode, length in enumerate(LENGTHS):
        state, action = ours["observation.state"][starts[episode]:starts[episode + 1]], ours["action"][starts[episode]:starts[episode + 1]]
        pictures = {camera: read_video_frames(root, episode, camera).astype(float) for camera in CAMERAS}
        for frame in range(length):
            step = dataset.get_step_data(episode, frame)
            np.testing.assert_array_equal(np.concatenate([step["state.single_arm"], step["state.gripper"]], axis=1),
                                          state[frame:frame + 1])
            # 16 action steps from this frame on; Isaac repeats the last one past the episode's end
            chunk = action[np.minimum(np.arange(frame, frame + 16), length - 1)]
            np.testing.assert_array_equal(np.concatenate([step["action.single_arm"], step["action.gripper"]], axis=1), chunk)
            assert list(step["annotation.human.task_description"]) == [TASK]
            for key, camera in (("video.front", "top_view"), ("video.wrist", "wrist")):
                assert step[key].shape == (1, SIZE, SIZE, 3)
                picture = step[key][0, ..., ::-1] if backend == "opencv" else step[key][0]  # Isaac passes OpenCV's BGR on
                check_picture(picture, pictures[camera], written[episode][camera], frame)


def test_nvidia_gr00t_policy_patched_loads_the_small_checkpoint_and_acts_as_ours(monkeypatch):
    """patches/isaac_gr00t_n15_small_checkpoint.patch applied: NVIDIA's Gr00tPolicy, with the data config the patch
    adds (so100_dualcam, the top camera named top_view as the committed checkpoint names it), loads every stored
    tensor of checkpoints/groot_n15_small_so101_sim unchanged, feeds it with the checkpoint's own tokenizer, and in
    float32 returns our action chunk from the same observation and noise seed (2.7e-5 degrees apart when written).
    bf16 weights, its CPU default, are further off: that is the dtype, not the model (docs/groot.md)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # a local checkpoint: nothing may come from the hub
    torch = pytest.importorskip("torch")
    DATA_CONFIG_MAP = isaac("gr00t.experiment.data_config").DATA_CONFIG_MAP
    if "so101_sim_top_view" not in DATA_CONFIG_MAP:
        pytest.skip("the Isaac-GR00T checkout is not patched: git apply patches/isaac_gr00t_n15_small_checkpoint.patch")
    Gr00tPolicy = isaac("gr00t.model.policy").Gr00tPolicy
    from safetensors.torch import load_file

    from groot_policy import GR00TPolicy
    from joint_units import radians_to_units
    from so101_env import SO101PaperSquareEnv

    checkpoint = pathlib.Path(__file__).resolve().parent.parent / "checkpoints" / "groot_n15_small_so101_sim"
    config = DATA_CONFIG_MAP["so101_sim_top_view"]
    nvidia = Gr00tPolicy(model_path=str(checkpoint), embodiment_tag="new_embodiment", modality_config=config.modality_config(),
                         modality_transform=config.transform(), device="cpu")
    weights = nvidia.model.float().state_dict()
    stored = load_file(checkpoint / "model.safetensors")
    assert all(torch.equal(weights[name], tensor.float()) for name, tensor in stored.items())
    ours = GR00TPolicy.from_pretrained(checkpoint, dtype="float32", device="cpu")

    env = SO101PaperSquareEnv(image_size=224)
    try:
        for seed in range(2):
            obs, _ = env.reset(seed=seed)
            images = env.render_cameras()
            joints = radians_to_units(obs[None, :6], "degrees")  # the checkpoint's units
            observation = {"video.top_view": images["top_view"][None], "video.wrist": images["wrist"][None],
                           "state.single_arm": joints[:, :5], "state.gripper": joints[:, 5:],
                           "annotation.human.task_description": [TASK]}  # what Isaac's example clients send
            torch.manual_seed(seed)  # NVIDIA's flow starts from the global generator's first draw
            theirs = nvidia.get_action(observation)
            ours.generator.manual_seed(seed)
            mine = ours.get_action(observation)
            for key in ("action.single_arm", "action.gripper"):
                assert theirs[key].shape == mine[key].shape == (16, {"action.single_arm": 5, "action.gripper": 1}[key])
                np.testing.assert_allclose(theirs[key], mine[key], atol=1e-3)  # degrees
    finally:
        env.close()
