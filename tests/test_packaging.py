"""What `pip install .` ships: every package, and the theme files."""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_of_the_source_tree_is_listed() -> None:
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
                 ["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "monitor").rglob(
        "__init__.py")}
    assert found | {"monitor.themes"} == listed


def test_the_wheel_carries_the_theme_files(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                    "-q", "-w", str(tmp_path), str(ROOT)], check=True, capture_output=True)
    wheel = next(tmp_path.glob("monitor-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {f"monitor/themes/{p.name}" for p in (ROOT / "themes").glob("*.toml")}
    assert len(shipped) >= 4
    assert shipped <= names
    assert "monitor/hub/server.py" in names and "monitor/tui/app.py" in names
