"""The .deb package of the bundle, built with ``dpkg-deb`` (used by ``build.py``).

Layout (owner root, directories 0755, files 0644, the two programs 0755)::

    /opt/inventory-sync/                   the one-folder bundle
    /usr/bin/inventory-sync                -> /opt/inventory-sync/inventory-sync
    /usr/bin/inventory-sync-app            -> /opt/inventory-sync/inventory-sync-app
    /usr/share/applications/inventory-sync-app.desktop
    /usr/share/icons/hicolor/NxN/apps/inventory-sync.png
    /usr/share/doc/inventory-sync/{copyright,changelog.gz}

No maintainer scripts: the desktop's menu and icon caches are refreshed by the
dpkg triggers of desktop-file-utils and hicolor-icon-theme where installed.

``Depends``: the packages in ``deb/control.in`` (every library Qt's xcb and
Wayland platform plugins load, so that a bare Debian or Ubuntu gets a working
desktop app, fonts through fontconfig-config and keyboard layouts through
libxkbcommon0's xkb-data), plus ``libc6`` no older than the newest glibc
symbol version any bundled binary uses. The build fails if a bundled binary
links to a system library whose package is not among them (found with
``ldd`` and ``dpkg -S``), so the list cannot fall behind the bundle.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path

__all__ = ["Linkage", "build", "declared_depends", "linkage"]

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from inventory_qt.platform_check import DEBIAN_PACKAGES  # noqa: E402  (the Debian package of each Qt dependency)

PACKAGE = "inventory-sync"
PREFIX = Path("opt") / PACKAGE
PROGRAMS = ("inventory-sync", "inventory-sync-app")
#: in the bundle folder for the tar.gz only: the .deb installs these under /usr/share itself
TARBALL_ONLY = ("share", "install-desktop-entry")
#: packages every Debian and Ubuntu system has installed (Essential or Priority: required)
BASE_PACKAGES = frozenset({"libc6", "libgcc-s1", "libstdc++6", "zlib1g", "libzstd1"})
_GLIBC = re.compile(rb"GLIBC_(\d+)\.(\d+)(?:\.(\d+))?")


def architecture() -> str:
    """Debian's name for this machine's architecture (amd64, arm64)."""
    return subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True, check=True).stdout.strip()


def declared_depends() -> list[str]:
    """The Depends list of deb/control.in (without libc6, which is computed)."""
    text = (HERE / "deb" / "control.in").read_text()
    match = re.search(r"^Depends: @LIBC@,(.*?)(?=^\S)", text, re.MULTILINE | re.DOTALL)
    if match is None:
        raise SystemExit("deb/control.in: no 'Depends: @LIBC@, ...' field")
    return [name.strip() for name in match.group(1).replace("\n", " ").split(",") if name.strip()]


def elf_files(root: Path) -> list[Path]:
    """Every ELF file (programs, libraries, extension modules) under ``root``, symbolic links left out."""
    found = []
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            with path.open("rb") as f:
                if f.read(4) == b"\x7fELF":
                    found.append(path)
    return found


@dataclass(frozen=True)
class Linkage:
    """What the bundled binaries need from the system."""

    #: system libraries linked to directly: name -> path here (None: not found here)
    external: dict[str, str | None]
    #: the newest GLIBC_x.y symbol version any binary asks for
    min_glibc: str


def linkage(bundle: Path) -> Linkage:
    """Read every bundled binary once (``objdump -p -T``, ``ldd``) for what it needs from the system.

    The external libraries are the binaries' ``NEEDED`` entries that no
    bundled file provides; ``ldd``, run with the bundle's library folders
    first as the bundle's launcher does, says where each is found.
    """
    files = elf_files(bundle)
    provided = {p.name for p in bundle.rglob("*.so*")}
    folders = sorted({str(p.parent) for p in files if ".so" in p.name})
    env = {**os.environ, "LD_LIBRARY_PATH": os.pathsep.join(folders)}

    def inspect(path: Path) -> tuple[bytes, str]:
        headers = subprocess.run(["objdump", "-p", "-T", str(path)], capture_output=True, check=False).stdout
        where = subprocess.run(["ldd", str(path)], capture_output=True, text=True, env=env, check=False).stdout
        return headers, where

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        outputs = list(pool.map(inspect, files))
    direct: set[str] = set()
    located: dict[str, str | None] = {}
    newest = (2, 17)
    for headers, where in outputs:
        direct.update(line.split()[1].decode() for line in headers.splitlines() if line.strip().startswith(b"NEEDED"))
        for match in _GLIBC.finditer(headers):
            newest = max(newest, (int(match.group(1)), int(match.group(2))))
        for line in where.splitlines():
            name, arrow, path = line.strip().partition(" => ")
            if arrow:
                located.setdefault(name, None if path.startswith("not found") else path.split(" (")[0])
    external = {name: located.get(name) for name in sorted(direct - provided)}
    return Linkage(external, f"{newest[0]}.{newest[1]}")


def packages_of(paths: list[str]) -> dict[str, str]:
    """The Debian package owning each library path (``dpkg -S``; usr-merged paths tried both ways)."""
    owners: dict[str, str] = {}
    for path in paths:
        candidates = [path, os.path.realpath(path)]
        candidates += [c.removeprefix("/usr") for c in candidates if c.startswith("/usr/lib")]
        candidates += ["/usr" + c for c in candidates if c.startswith("/lib")]
        for candidate in dict.fromkeys(candidates):
            result = subprocess.run(["dpkg", "-S", candidate], capture_output=True, text=True, check=False)
            if result.returncode == 0:
                owners[path] = result.stdout.split(":", 1)[0].strip()
                break
    return owners


def check_depends(links: Linkage, declared: list[str]) -> None:
    """Fail when the bundle needs a system library that Depends does not bring."""
    external = links.external
    # not installed on this machine (libwayland-egl1 on a server): known to Qt's table, or an error
    absent = {name for name, path in external.items() if path is None}
    unknown = sorted(absent - set(DEBIAN_PACKAGES))
    if unknown:
        raise SystemExit(f"deb: bundled binaries link to libraries found nowhere: {', '.join(unknown)}")
    owners = packages_of([p for p in external.values() if p is not None])
    unowned = sorted(set(external.values()) - set(owners) - {None})
    if unowned:
        raise SystemExit(f"deb: no Debian package owns {', '.join(str(p) for p in unowned)}")
    needed = {pkg.split(":")[0] for pkg in owners.values()} | {DEBIAN_PACKAGES[name] for name in absent}
    needed -= BASE_PACKAGES
    undeclared = sorted(needed - set(declared))
    if undeclared:
        raise SystemExit(f"deb: add to Depends in packaging/deb/control.in: {', '.join(undeclared)}")


def _copy_bundle(bundle: Path, target: Path) -> None:
    shutil.copytree(bundle, target, symlinks=True, ignore=lambda d, _: TARBALL_ONLY if Path(d) == bundle else ())
    for path in target.rglob("*"):
        if path.is_symlink():
            continue
        if path.is_dir():
            path.chmod(0o755)
        else:
            executable = path.parent == target and path.name in PROGRAMS
            path.chmod(0o755 if executable else 0o644)


def _changelog(version: str, maintainer: str) -> bytes:
    date = format_datetime(datetime.fromtimestamp(_source_date(), UTC))
    text = (
        f"{PACKAGE} ({version}) unstable; urgency=medium\n\n"
        f"  * Release {version}: the desktop app and the inventory-sync command line,\n"
        "    installed as one PyInstaller bundle under /opt/inventory-sync.\n\n"
        f" -- {maintainer}  {date}\n"
    )
    return gzip.compress(text.encode(), compresslevel=9, mtime=0)


def _source_date() -> int:
    """SOURCE_DATE_EPOCH if set (reproducible builds), else now."""
    return int(os.environ.get("SOURCE_DATE_EPOCH", datetime.now(UTC).timestamp()))


def _installed_size_kib(root: Path) -> int:
    """What dpkg-gencontrol would write: the files' sizes in KiB, rounded up, plus one per directory or link."""
    total = 0
    for path in root.rglob("*"):
        if path.is_relative_to(root / "DEBIAN"):
            continue
        total += 1 if path.is_symlink() or path.is_dir() else -(-path.stat().st_size // 1024)
    return total


def _md5sums(root: Path) -> str:
    lines = []
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink() and not path.is_relative_to(root / "DEBIAN"):
            digest = hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()
            lines.append(f"{digest}  {path.relative_to(root)}\n")
    return "".join(lines)


def stage(bundle: Path, version: str, root: Path, *, min_glibc: str) -> str:
    """Lay out the package's files under ``root``; return the control file's text (``min_glibc``: see Linkage)."""
    shutil.rmtree(root, ignore_errors=True)
    _copy_bundle(bundle, root / PREFIX)
    usr_bin = root / "usr" / "bin"
    usr_bin.mkdir(parents=True)
    for program in PROGRAMS:  # absolute: /usr and /opt are different top-level folders (Debian policy 10.5)
        (usr_bin / program).symlink_to(Path("/") / PREFIX / program)
    share = root / "usr" / "share"
    shutil.copytree(bundle / "share", share)
    doc = share / "doc" / PACKAGE
    doc.mkdir(parents=True)
    shutil.copy(HERE / "deb" / "copyright", doc / "copyright")
    template = (HERE / "deb" / "control.in").read_text()
    maintainer = re.search(r"^Maintainer: (.+)$", template, re.MULTILINE)
    assert maintainer is not None
    (doc / "changelog.gz").write_bytes(_changelog(version, maintainer.group(1)))
    for path in [share, *share.rglob("*"), usr_bin.parent, usr_bin, root / "opt"]:
        if not path.is_symlink():
            path.chmod(0o755 if path.is_dir() else 0o644)
    control = (
        template.replace("@VERSION@", version)
        .replace("@ARCH@", architecture())
        .replace("@LIBC@", f"libc6 (>= {min_glibc})")
        .replace("@INSTALLED_SIZE@", str(_installed_size_kib(root)))
    )
    debian = root / "DEBIAN"
    debian.mkdir()
    (debian / "control").write_text(control)
    (debian / "md5sums").write_text(_md5sums(root))
    for path in debian.iterdir():
        path.chmod(0o644)
    return control


def build(bundle: Path, version: str, dist: Path) -> Path:
    """Build dist/inventory-sync_VERSION_ARCH.deb from the bundle folder; return its path."""
    links = linkage(bundle)
    check_depends(links, declared_depends())
    root = dist.parent / "build" / "deb" / "root"
    stage(bundle, version, root, min_glibc=links.min_glibc)
    out = dist / f"{PACKAGE}_{version}_{architecture()}.deb"
    # zstd level 9: 5 s here for 60 MB; xz (the default) makes 47 MB but takes 2 to 3 minutes on
    # this machine kind, a fifth of the CI budget. dpkg reads zstd since 1.21.18 (Debian 12,
    # Ubuntu 21.10), older than the glibc 2.36 the bundle needs anyway.
    compression = ["-Zzstd", "-z9", f"--threads-max={os.cpu_count() or 1}"]
    subprocess.run(
        ["dpkg-deb", "--root-owner-group", *compression, "--build", str(root), str(out)],
        check=True,
        stdout=subprocess.DEVNULL,
        env={**os.environ, "SOURCE_DATE_EPOCH": str(_source_date())},
    )
    return out
