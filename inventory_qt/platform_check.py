"""Before Qt starts: can one of its platform plugins load here? If not, which packages are missing.

Without the libraries its ``xcb`` (X11) or ``wayland`` plugin needs, Qt aborts
with a message that names the wrong package (``libxcb-cursor0`` even when it
is installed, see ../shared/stack.md §2). This check runs ``ldd`` on the
plugins Qt would try, in Qt's order, and when none of them can load it names
the missing libraries and the exact ``apt-get install`` line for Debian and
Ubuntu. Other systems are not checked.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

__all__ = ["BASE_PACKAGES", "DEBIAN_PACKAGES", "PLATFORM_PLUGINS", "check", "missing_libraries", "qt_directory"]

#: The Debian package of each system library that Qt's platform plugins (and the Qt
#: libraries they load from the wheel) link to. ``tests/inventory_qt/test_platform_check.py``
#: checks this table against the plugins installed.
DEBIAN_PACKAGES: dict[str, str] = {
    "libEGL.so.1": "libegl1",
    "libGL.so.1": "libgl1",
    "libGLX.so.0": "libglx0",
    "libOpenGL.so.0": "libopengl0",
    "libX11-xcb.so.1": "libx11-xcb1",
    "libX11.so.6": "libx11-6",
    "libdbus-1.so.3": "libdbus-1-3",
    "libfontconfig.so.1": "libfontconfig1",
    "libfreetype.so.6": "libfreetype6",
    "libglib-2.0.so.0": "libglib2.0-0",
    "libgthread-2.0.so.0": "libglib2.0-0",
    "libgobject-2.0.so.0": "libglib2.0-0",
    "libwayland-client.so.0": "libwayland-client0",
    "libwayland-cursor.so.0": "libwayland-cursor0",
    "libwayland-egl.so.1": "libwayland-egl1",
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-glx.so.0": "libxcb-glx0",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-render.so.0": "libxcb-render0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-shm.so.0": "libxcb-shm0",
    "libxcb-sync.so.1": "libxcb-sync1",
    "libxcb-util.so.1": "libxcb-util1",
    "libxcb-xfixes.so.0": "libxcb-xfixes0",
    "libxcb-xinput.so.0": "libxcb-xinput0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxcb.so.1": "libxcb1",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libz.so.1": "zlib1g",
    "libzstd.so.1": "libzstd1",
    "libpng16.so.16": "libpng16-16",
    "libstdc++.so.6": "libstdc++6",
    "libgcc_s.so.1": "libgcc-s1",
    "libc.so.6": "libc6",
    "libm.so.6": "libc6",
    "libdl.so.2": "libc6",
    "libpthread.so.0": "libc6",
    "librt.so.1": "libc6",
    "ld-linux-x86-64.so.2": "libc6",
    "ld-linux-aarch64.so.1": "libc6",
}

#: Packages every Debian system has (essential or required), left out of install lines.
BASE_PACKAGES = frozenset({"libc6", "libgcc-s1", "libstdc++6", "zlib1g", "libzstd1"})

#: Qt's platform plugins for a desktop, in the order Qt tries them on Linux.
PLATFORM_PLUGINS = {"wayland": "libqwayland.so", "xcb": "libqxcb.so"}
#: Qt's own libraries each plugin loads (from the wheel); their system libraries count too.
PLUGIN_QT_LIBRARIES = {
    "wayland": ("libQt6WaylandClient.so.6", "libQt6Gui.so.6", "libQt6Widgets.so.6"),
    "xcb": ("libQt6XcbQpa.so.6", "libQt6Gui.so.6", "libQt6Widgets.so.6"),
}
#: Without this file fontconfig finds no font and Qt draws every glyph as a box (stack.md §8).
FONTCONFIG_FILE = Path("/etc/fonts/fonts.conf")


def qt_directory() -> Path:
    """The ``Qt`` directory of the installed PySide6 (plugins and libraries)."""
    import PySide6  # noqa: PLC0415  (only when checking: importing PySide6 loads no plugin)

    return Path(PySide6.__file__).parent / "Qt"


def missing_libraries(platform: str, qt: Path | None = None) -> list[str]:
    """The system libraries that Qt's ``platform`` plugin needs and the loader cannot find here."""
    qt = qt if qt is not None else qt_directory()
    files = [qt / "plugins" / "platforms" / PLATFORM_PLUGINS[platform]]
    files += [qt / "lib" / name for name in PLUGIN_QT_LIBRARIES[platform]]
    missing: set[str] = set()
    for path in files:
        if not path.exists():
            continue
        result = subprocess.run(["ldd", str(path)], capture_output=True, text=True, check=False)  # noqa: S603, S607
        for line in result.stdout.splitlines():
            name, _, where = line.strip().partition(" => ")
            if where.startswith("not found"):
                missing.add(name)
    return sorted(missing)


def _candidates(env: Mapping[str, str]) -> list[str] | None:
    """The platforms Qt would try (None: not a desktop session and no platform chosen)."""
    chosen = env.get("QT_QPA_PLATFORM", "")
    if chosen:
        names = [name.split(":")[0] for name in chosen.split(";")]
        return [name for name in names if name in PLATFORM_PLUGINS] or []
    found = []
    if env.get("WAYLAND_DISPLAY"):
        found.append("wayland")
    if env.get("DISPLAY"):
        found.append("xcb")
    return found or None


def check(env: Mapping[str, str] | None = None, qt: Path | None = None) -> str | None:
    """Why the app cannot show a window here, with the command that fixes it; None when it can."""
    env = env if env is not None else os.environ
    if not sys.platform.startswith("linux"):
        return None
    candidates = _candidates(env)
    if candidates is None:
        return (
            "no display: neither DISPLAY nor WAYLAND_DISPLAY is set. Start the app from a desktop session "
            "(or set QT_QPA_PLATFORM=offscreen to run it without a window)"
        )
    if not candidates or shutil.which("ldd") is None:
        return None  # offscreen, vnc...: nothing to check
    missing: dict[str, list[str]] = {}
    for platform in candidates:
        libraries = missing_libraries(platform, qt)
        if not libraries:
            return None if FONTCONFIG_FILE.exists() else _install_hint(["fontconfig-config"], "no font configuration")
        missing[platform] = libraries
    libraries = sorted({name for names in missing.values() for name in names})
    packages = sorted({DEBIAN_PACKAGES.get(name, name) for name in libraries})
    if not FONTCONFIG_FILE.exists():
        packages.append("fontconfig-config")
    return _install_hint(packages, f"Qt's {' and '.join(missing)} platform plugin cannot load: {', '.join(libraries)}")


def _install_hint(packages: list[str], reason: str) -> str:
    return f"{reason} missing. Install with:\n    sudo apt-get install -y {' '.join(packages)}"
