"""The desktop check before Qt starts: the package table against the plugins installed, and its words."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from inventory_qt import platform_check
from inventory_qt.platform_check import BASE_PACKAGES, DEBIAN_PACKAGES, PLATFORM_PLUGINS, PLUGIN_QT_LIBRARIES, check

ROOT = Path(__file__).resolve().parents[2]


def needed(path: Path) -> set[str]:
    """The libraries an ELF file names as NEEDED."""
    out = subprocess.run(["readelf", "-d", str(path)], capture_output=True, text=True, check=True).stdout
    return set(re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out))


def system_libraries() -> set[str]:
    """What the desktop plugins and the Qt libraries they load need from the system (not from the wheel)."""
    qt = platform_check.qt_directory()
    files = [qt / "plugins" / "platforms" / plugin for plugin in PLATFORM_PLUGINS.values()]
    files += [qt / "lib" / name for names in PLUGIN_QT_LIBRARIES.values() for name in names]
    files += [qt / "lib" / "libQt6Core.so.6", qt / "lib" / "libQt6DBus.so.6"]
    bundled = {path.name for path in (qt / "lib").iterdir()}
    return {name for path in files if path.exists() for name in needed(path)} - bundled


needs_readelf = pytest.mark.skipif(
    not sys.platform.startswith("linux") or shutil.which("readelf") is None, reason="needs Linux and readelf (binutils)"
)


@needs_readelf
def test_every_library_the_plugins_need_has_a_package() -> None:
    libraries = system_libraries()
    assert {"libxcb-cursor.so.0", "libxcb-icccm.so.4", "libwayland-client.so.0"} <= libraries  # we did look
    assert libraries - set(DEBIAN_PACKAGES) == set()


@needs_readelf
@pytest.mark.parametrize("where", ["README.md", ".ci/run"])
def test_the_readme_and_ci_name_every_package_a_desktop_needs(where: str) -> None:
    wanted = {DEBIAN_PACKAGES[name] for name in system_libraries()} - BASE_PACKAGES | {"fontconfig-config"}
    text = (ROOT / where).read_text()
    named = set(re.findall(r"[a-z0-9][a-z0-9.+-]+", text))
    assert wanted - named == set()


def test_no_display_says_so() -> None:
    message = check({})
    assert message is not None and "no display" in message and "QT_QPA_PLATFORM=offscreen" in message
    assert check({"QT_QPA_PLATFORM": "offscreen"}) is None


def test_missing_libraries_give_the_install_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(platform_check, "missing_libraries", lambda platform, qt=None: ["libxcb-icccm.so.4"])
    message = check({"DISPLAY": ":0"})
    assert message is not None and "xcb platform plugin cannot load: libxcb-icccm.so.4" in message
    assert message.splitlines()[-1].strip().startswith("sudo apt-get install -y libxcb-icccm4")
    # Qt falls back from wayland to xcb: one plugin that loads is enough
    monkeypatch.setattr(
        platform_check,
        "missing_libraries",
        lambda platform, qt=None: [] if platform == "xcb" else ["libwayland-cursor.so.0"],
    )
    assert check({"DISPLAY": ":0", "WAYLAND_DISPLAY": "wayland-0"}) is None


@needs_readelf
def test_the_check_reads_the_real_plugins() -> None:
    missing = platform_check.missing_libraries("xcb")
    assert all(name in DEBIAN_PACKAGES for name in missing)  # whatever this machine lacks has a package


def test_the_app_prints_the_fix_instead_of_aborting(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-m", "inventory_qt", "--data-dir", str(tmp_path)],
        capture_output=True, text=True, env=env, timeout=60, check=False, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 1 and "no display" in proc.stderr and "Abort" not in proc.stderr
