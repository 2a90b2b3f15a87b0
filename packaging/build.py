"""Build the installers (``make dist``): the one-folder bundle, its tar.gz and its .deb.

Run from the project's venv (``make dist`` installs PyInstaller through the
``[dist]`` extra first)::

    .venv/bin/python packaging/build.py [--skip-deb]

1. The project is installed into ``build/site`` as pip would install its wheel
   (``pip install --no-deps --target``), so the bundle carries exactly the
   declared package data (starter inventory, pictures, icons) and not whatever
   lies in the work tree.
2. PyInstaller builds ``dist/inventory-sync/`` from ``packaging/inventory-sync.spec``.
3. The desktop entry, the icons in the hicolor layout and ``install-desktop-entry``
   (adds the app to a user's menu and both commands to ``~/.local/bin``) are added
   to the folder.
4. ``dist/inventory-sync-VERSION-linux-ARCH.tar.gz`` holds the folder as
   ``inventory-sync-VERSION/`` (owner root, files in a stable order).
5. ``dist/inventory-sync_VERSION_ARCH.deb`` (``deb_package.py``) installs it under
   ``/opt/inventory-sync``.

Each step prints its time; the end prints the sizes.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import time
import tomllib
from collections.abc import Callable
from pathlib import Path

import deb_package

ROOT = Path(__file__).resolve().parents[1]
PACKAGING = ROOT / "packaging"
BUILD = ROOT / "build"
DIST = ROOT / "dist"
SITE = BUILD / "site"
NAME = "inventory-sync"
BUNDLE = DIST / NAME
APP = "inventory-sync-app"
DESKTOP_FILE = f"{APP}.desktop"
ICON_NAME = "inventory-sync"
#: hicolor sizes installed (resources/icons/ has them all; 24 and 512 are for other uses)
ICON_SIZES = (16, 24, 32, 48, 64, 128, 256, 512)


def project_version() -> str:
    """The version in pyproject.toml."""
    with (ROOT / "pyproject.toml").open("rb") as f:
        version: str = tomllib.load(f)["project"]["version"]
    return version


def machine() -> str:
    """The machine name used in the tar.gz's name (x86_64, aarch64)."""
    return platform.machine() or "unknown"


def stage_site() -> None:
    """Install the project (not its dependencies) into build/site, as from its wheel.

    Files whose content did not change keep their time, so that PyInstaller's
    cache in build/pyinstaller sees nothing new and rebuilds in seconds.
    """
    fresh = BUILD / "site.new"
    shutil.rmtree(fresh, ignore_errors=True)
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-compile"]
    subprocess.run(
        [*pip, "--target", str(fresh), str(ROOT)],
        check=True,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )
    _sync_tree(fresh, SITE)
    shutil.rmtree(fresh)


def _sync_tree(source: Path, target: Path) -> None:
    """Make ``target`` hold the files of ``source``, copying only those that differ."""
    wanted = {p.relative_to(source) for p in source.rglob("*") if p.is_file()}
    if target.exists():
        for path in sorted(target.rglob("*"), reverse=True):
            relative = path.relative_to(target)
            if path.is_file() and relative not in wanted:
                path.unlink()
            elif path.is_dir() and not any(path.iterdir()):
                path.rmdir()
    for relative in sorted(wanted):
        old, new = target / relative, source / relative
        if not old.is_file() or old.read_bytes() != new.read_bytes():
            old.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(new, old)


def run_pyinstaller() -> None:
    """Build dist/inventory-sync/ from the spec (PyInstaller reuses build/pyinstaller's cache)."""
    subprocess.run(
        [
            sys.executable, "-m", "PyInstaller", "--noconfirm", "--log-level", "WARN",
            "--distpath", str(DIST), "--workpath", str(BUILD / "pyinstaller"),
            str(PACKAGING / "inventory-sync.spec"),
        ],
        check=True,
        env={**os.environ, "INVENTORY_SYNC_SITE": str(SITE)},
    )  # fmt: skip


def add_desktop_files(bundle: Path) -> None:
    """The desktop entry and the icons (hicolor layout) under share/, and install-desktop-entry."""
    share = bundle / "share"
    shutil.rmtree(share, ignore_errors=True)
    (share / "applications").mkdir(parents=True)
    shutil.copy(PACKAGING / DESKTOP_FILE, share / "applications" / DESKTOP_FILE)
    icons = SITE / "inventory_resources" / "icons"
    for size in ICON_SIZES:
        target = share / "icons" / "hicolor" / f"{size}x{size}" / "apps"
        target.mkdir(parents=True)
        shutil.copy(icons / f"inventory-sync-{size}.png", target / f"{ICON_NAME}.png")
    script = bundle / "install-desktop-entry"
    shutil.copy(PACKAGING / "install-desktop-entry.sh", script)
    script.chmod(0o755)


def make_tarball(bundle: Path, version: str) -> Path:
    """dist/inventory-sync-VERSION-linux-ARCH.tar.gz with the folder as inventory-sync-VERSION/."""
    out = DIST / f"{NAME}-{version}-linux-{machine()}.tar.gz"
    top = f"{NAME}-{version}"

    def owned_by_root(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        return info

    tmp = out.with_suffix(".tmp")
    with tarfile.open(tmp, "w:gz", compresslevel=6) as tar:
        tar.add(bundle, arcname=top, filter=owned_by_root)  # tarfile adds a folder's entries sorted
    tmp.replace(out)
    return out


def size_text(path: Path) -> str:
    """Size of a file or of a folder's files, in MB (10^6 bytes) and MiB."""
    size = path.stat().st_size if path.is_file() else sum(p.lstat().st_size for p in path.rglob("*") if p.is_file())
    return f"{size / 1e6:.1f} MB ({size / 2**20:.1f} MiB)"


def _timed(label: str, step: Callable[[], object], times: list[tuple[str, float]]) -> object:
    t0 = time.perf_counter()
    print(f"build: {label}...", flush=True)
    result = step()
    times.append((label, time.perf_counter() - t0))
    return result


def main(argv: list[str] | None = None) -> int:
    """Build the bundle, the tar.gz and the .deb; print times and sizes."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-deb", action="store_true", help="build the bundle and the tar.gz only")
    args = parser.parse_args(argv)
    version = project_version()
    times: list[tuple[str, float]] = []
    _timed("install the project into build/site", stage_site, times)
    _timed("PyInstaller", run_pyinstaller, times)
    _timed("desktop entry and icons", lambda: add_desktop_files(BUNDLE), times)
    tarball = _timed("tar.gz", lambda: make_tarball(BUNDLE, version), times)
    deb = None
    if not args.skip_deb:
        deb = _timed("deb", lambda: deb_package.build(BUNDLE, version, DIST), times)
    for label, seconds in times:
        print(f"build: {label}: {seconds:.1f} s")
    print(f"build: total {sum(s for _, s in times):.1f} s")
    print(f"build: {BUNDLE.relative_to(ROOT)}/: {size_text(BUNDLE)}")
    for artifact in (tarball, deb):
        if isinstance(artifact, Path):
            print(f"build: {artifact.relative_to(ROOT)}: {size_text(artifact)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
