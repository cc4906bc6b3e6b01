"""The built wheel installs one import name, ``recengine``, and every package of the source tree.

The repository keeps ``engine/``, ``plugins/`` and ``feature_store/`` at its top; installed,
they must become ``recengine``, ``recengine.plugins`` and ``recengine.feature_store`` and put
nothing else (no ``engine``, no ``plugins``) into a user's environment.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCE_FOLDERS = {"engine": "recengine", "plugins": "recengine/plugins", "feature_store": "recengine/feature_store"}


@pytest.fixture(scope="module")
def wheel_names(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    out = tmp_path_factory.mktemp("wheel")
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
         "-w", str(out), str(ROOT)],
        capture_output=True, text=True, timeout=300,
    )
    assert build.returncode == 0, f"pip wheel failed:\n{build.stdout}\n{build.stderr}"
    wheels = list(out.glob("recengine-*.whl"))
    assert len(wheels) == 1, f"expected one recengine wheel in {out}, found {[w.name for w in wheels]}"
    with zipfile.ZipFile(wheels[0]) as archive:
        return set(archive.namelist())


def test_wheel_holds_no_top_level_name_but_recengine(wheel_names: set[str]) -> None:
    top = {name.split("/")[0] for name in wheel_names if not name.split("/")[0].endswith(".dist-info")}
    assert top == {"recengine"}, f"the wheel installs top-level names {sorted(top)}; only 'recengine' is allowed"


def test_every_source_package_is_in_the_wheel(wheel_names: set[str]) -> None:
    missing = []
    for folder, installed in SOURCE_FOLDERS.items():
        for init in sorted((ROOT / folder).rglob("__init__.py")):
            relative = init.relative_to(ROOT / folder).as_posix()
            if f"{installed}/{relative}" not in wheel_names:
                missing.append(f"{folder}/{relative}")
    assert not missing, (f"packages in the source tree but not in the wheel (add them to "
                         f"[tool.setuptools] packages in pyproject.toml): {missing}")

