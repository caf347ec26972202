"""OpenGL never breaks importing or stepping the env: only a render fails, and it says what to install.

so101_env picks MuJoCo's OpenGL backend when it is imported (before mujoco): the user's MUJOCO_GL,
else EGL, else OSMesa, else none ("disable", with the reason in SO101_GL_PROBLEM for child
processes). The backend is fixed per process, so each case runs in a child Python process with a
controlled environment; a missing library is simulated by making ctypes.util.find_library (which
so101_env asks) return None in the child before so101_env is imported.
"""

from __future__ import annotations

import ast
import ctypes.util
import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
GL_VARIABLES = ("MUJOCO_GL", "PYOPENGL_PLATFORM", "SO101_GL_PROBLEM", "DISPLAY")

HIDE_ALL_GL = "import ctypes.util\nctypes.util.find_library = lambda name: None\n"
HIDE_OSMESA = (
    "import ctypes.util\n"
    "_find_library = ctypes.util.find_library\n"
    "ctypes.util.find_library = lambda name: None if name == 'OSMesa' else _find_library(name)\n"
)

# Imports so101_env, steps a state-only env and renders; prints one marker line per stage.
STEP_AND_RENDER = """
import os
import numpy as np
import so101_env
print("IMPORTED MUJOCO_GL=" + repr(os.environ.get("MUJOCO_GL")))
env = so101_env.SO101PaperSquareEnv(render_mode="rgb_array", image_size=32)
env.reset(seed=0)
for _ in range(5):
    obs, reward, terminated, truncated, info = env.step(np.zeros(6))
assert np.isfinite(obs).all()
print("STEPPED")
try:
    image = env.render()
except RuntimeError as error:
    print("RENDER_ERROR " + repr(str(error)))
else:
    print("RENDERED shape=%s nonzero=%d" % (image.shape, int(np.count_nonzero(image))))
"""


def run_child(script: str, *args: str, **gl_env: str) -> subprocess.CompletedProcess:
    """Run `python -c script *args` in the repository root, with the OpenGL variables of this
    process removed and `gl_env` set; the child must exit cleanly."""
    env = {key: value for key, value in os.environ.items() if key not in GL_VARIABLES}
    env.update(gl_env)
    result = subprocess.run([sys.executable, "-c", script, *args], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, f"child failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    return result


def marker(result: subprocess.CompletedProcess, name: str) -> str:
    """The rest of the child's line that starts with `name` (the test fails if there is none)."""
    for line in result.stdout.splitlines():
        if line.startswith(name):
            return line[len(name):].strip()
    raise AssertionError(f"the child printed no {name} line:\n{result.stdout}\n{result.stderr}")


def render_error(result: subprocess.CompletedProcess) -> str:
    """The child's render error message; fails the test if the child rendered instead."""
    assert "STEPPED" in result.stdout, result.stdout + result.stderr
    assert "RENDERED" not in result.stdout, f"the child rendered, expected an error:\n{result.stdout}"
    return ast.literal_eval(marker(result, "RENDER_ERROR"))  # the repr() the child printed


def test_no_gl_library_at_all_only_render_fails():
    result = run_child(HIDE_ALL_GL + STEP_AND_RENDER)
    assert marker(result, "IMPORTED MUJOCO_GL=") == "'disable'"
    message = render_error(result)
    assert message.startswith("MuJoCo cannot render in this process: no headless OpenGL backend is available")
    assert "libosmesa6" in message
    assert "libegl1" in message


def test_requested_osmesa_without_osmesa_only_render_fails():
    result = run_child(HIDE_OSMESA + STEP_AND_RENDER, MUJOCO_GL="osmesa")
    assert marker(result, "IMPORTED MUJOCO_GL=") == "'disable'", "mujoco must be imported without a GL backend"
    message = render_error(result)
    assert "libOSMesa" in message and "libosmesa6" in message
    assert "MUJOCO_GL=osmesa" in message


def test_bogus_backend_name_only_render_fails():
    result = run_child(STEP_AND_RENDER, MUJOCO_GL="bogus")
    assert marker(result, "IMPORTED MUJOCO_GL=") == "'disable'"
    message = render_error(result)
    assert "MUJOCO_GL='bogus' is not a MuJoCo OpenGL backend" in message


def test_child_processes_inherit_the_precise_problem():
    # The grandchild sees every GL library again: only the inherited environment can tell it why
    # the parent could not render.
    script = HIDE_ALL_GL + textwrap.dedent("""
        import os, subprocess, sys
        import so101_env
        env = so101_env.SO101PaperSquareEnv(render_mode="rgb_array", image_size=32)
        env.reset(seed=0)
        try:
            env.render()
        except RuntimeError as error:
            print("PARENT_ERROR " + repr(str(error)))
        grandchild = subprocess.run([sys.executable, "-c", sys.argv[1]], capture_output=True, text=True, timeout=60)
        sys.stdout.write(grandchild.stdout)
        sys.stderr.write(grandchild.stderr)
        sys.exit(grandchild.returncode)
    """)
    result = run_child(script, STEP_AND_RENDER)
    parent_message = ast.literal_eval(marker(result, "PARENT_ERROR"))
    assert "libosmesa6" in parent_message
    assert marker(result, "IMPORTED MUJOCO_GL=") == "'disable'"
    assert render_error(result) == parent_message


def test_a_working_backend_renders_or_the_error_is_clear():
    """With no MUJOCO_GL and no display: where EGL or OSMesa works, the env renders an image with
    it; where neither does, the render error names what to install. Holds on a machine with Mesa's
    EGL and no OSMesa as on CI with libosmesa6 and no EGL."""
    result = run_child(STEP_AND_RENDER)
    backend = ast.literal_eval(marker(result, "IMPORTED MUJOCO_GL="))
    assert "STEPPED" in result.stdout
    if "RENDERED" in result.stdout:
        assert backend in ("egl", "osmesa")
        assert marker(result, "RENDERED").startswith("shape=(32, 64, 3)")
        assert int(marker(result, "RENDERED").rsplit("nonzero=", 1)[1]) > 0, "the image is black"
    else:
        message = render_error(result)
        assert message.startswith("MuJoCo c"), message
        assert "libosmesa6" in message or "libegl1" in message or "libnvidia-gl" in message, message


def test_the_users_backend_wins():
    if ctypes.util.find_library("OSMesa") is None:
        pytest.skip("OSMesa is not installed here (apt-get install -y libosmesa6)")
    result = run_child(STEP_AND_RENDER, MUJOCO_GL="osmesa")
    assert marker(result, "IMPORTED MUJOCO_GL=") == "'osmesa'"
    assert "STEPPED" in result.stdout


def test_mujoco_imported_first_is_a_clear_render_error_not_a_crash():
    # Too late to choose a backend: mujoco would try GLFW, which aborts the process without a display.
    result = run_child("import mujoco\n" + STEP_AND_RENDER)
    assert "import so101_env before mujoco" in render_error(result)
