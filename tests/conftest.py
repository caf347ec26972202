"""Make the top-level modules importable from tests/ (so101_env picks a headless GL backend itself)."""

import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
