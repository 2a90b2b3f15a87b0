"""Check the installers built by ``make dist`` (``make dist-test``, run by ``.ci/run``).

Run from the project's venv after ``packaging/build.py``::

    .venv/bin/python packaging/check.py

1. ``bundle``: ``dist/inventory-sync/inventory-sync-app --self-test`` passes with no display
   and no ``QT_QPA_PLATFORM`` set (it goes offscreen itself);
2. ``cli``: the bundled ``inventory-sync`` answers ``--version`` and ``--help``, and seeds and
   lists the starter inventory in a temporary data directory;
3. ``tar.gz``: the versioned archive holds the folder as ``inventory-sync-VERSION/``, both
   programs executable, the desktop entry and the icons;
4. ``deb``: ``dpkg-deb -I`` shows the package's fields (version, architecture, the libraries a
   bare system needs in Depends), ``dpkg-deb -c`` its files (the folder under /opt, both
   commands as /usr/bin links, the desktop entry and the hicolor icons);
5. ``deb payload``: the package's files, unpacked with ``dpkg-deb -x`` into a temporary
   folder, pass the self-test and answer ``--version``.

Each check prints one line; the first failure is named and the exit code is 1.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import build as dist_build
import deb_package

ROOT = dist_build.ROOT
BUNDLE = dist_build.BUNDLE
PROGRAMS = ("inventory-sync", "inventory-sync-app")
#: What a bare Debian or Ubuntu lacks for the bundle (../shared/stack.md §8): the .deb must pull them in.
BARE_SYSTEM_NEEDS = ("libgl1", "libegl1", "fontconfig-config")
#: Seconds any one program run may take.
RUN_TIMEOUT = 120


class CheckError(Exception):
    """A check found something wrong (the message says what)."""


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise CheckError(message)


def _headless_env() -> dict[str, str]:
    """This environment without a display or a chosen Qt platform: as a server or a CI job."""
    drop = ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM", "PYTHONPATH", "PYTHONHOME")
    return {k: v for k, v in os.environ.items() if k not in drop}


def _run(program: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(program), *args],
        capture_output=True,
        text=True,
        env=_headless_env(),
        timeout=RUN_TIMEOUT,
        check=False,
    )


def _ok(result: subprocess.CompletedProcess[str], what: str) -> str:
    _require(
        result.returncode == 0,
        f"{what} exited {result.returncode}:\n{result.stdout}{result.stderr}".rstrip(),
    )
    return result.stdout


def check_self_test(folder: Path) -> str:
    """The bundled app's --self-test passes."""
    out = _ok(_run(folder / "inventory-sync-app", "--self-test"), "inventory-sync-app --self-test")
    _require("self-test passed" in out, f"the self-test did not say it passed:\n{out}")
    return out.strip().splitlines()[-1]


def check_cli(folder: Path, version: str) -> str:
    """The bundled command line answers --version and --help, and seeds and lists a starter inventory."""
    cli = folder / "inventory-sync"
    out = _ok(_run(cli, "--version"), "inventory-sync --version").strip()
    _require(out == f"inventory-sync {version}", f"inventory-sync --version printed {out!r}")
    _require("usage: inventory-sync" in _ok(_run(cli, "--help"), "inventory-sync --help"), "no usage in --help")
    with tempfile.TemporaryDirectory(prefix="inventory-sync-check-") as tmp:
        common = ("--data-dir", tmp, "--user", "check")
        _ok(_run(cli, *common, "seed"), "inventory-sync seed")
        lines = _ok(_run(cli, *common, "--json", "items"), "inventory-sync items").splitlines()
    items = [json.loads(line) for line in lines if line.strip()]
    _require(bool(items) and all(item.get("image") for item in items), "the seeded items have no pictures")
    return f"{out}; --help; seeded and listed {len(items)} items with pictures"


def check_tarball(version: str) -> str:
    """The tar.gz holds the folder as inventory-sync-VERSION/ with its programs, desktop entry and icons."""
    path = dist_build.DIST / f"{dist_build.NAME}-{version}-linux-{dist_build.machine()}.tar.gz"
    _require(path.is_file(), f"{path.relative_to(ROOT)} is missing")
    top = f"{dist_build.NAME}-{version}"
    with tarfile.open(path) as tar:
        members = {m.name: m for m in tar.getmembers()}
    outside = [name for name in members if name != top and not name.startswith(top + "/")]
    _require(not outside, f"files outside {top}/: {outside[:3]}")
    for program in PROGRAMS:
        member = members.get(f"{top}/{program}")
        _require(member is not None and member.isfile() and member.mode & 0o111 == 0o111, f"{program} not executable")
    expected = [
        f"{top}/install-desktop-entry",
        f"{top}/share/applications/{dist_build.DESKTOP_FILE}",
        *(f"{top}/share/icons/hicolor/{s}x{s}/apps/{dist_build.ICON_NAME}.png" for s in dist_build.ICON_SIZES),
    ]
    missing = [name for name in expected if name not in members]
    _require(not missing, f"missing from the tar.gz: {', '.join(missing)}")
    return f"{path.name}: {len(members)} entries under {top}/"


def _deb_path(version: str) -> Path:
    path = dist_build.DIST / f"{deb_package.PACKAGE}_{version}_{deb_package.architecture()}.deb"
    _require(path.is_file(), f"{path.relative_to(ROOT)} is missing")
    return path


def _control_fields(path: Path) -> dict[str, str]:
    """The control file's fields (``dpkg-deb -f``), continuation lines joined."""
    text = _ok(subprocess.run(["dpkg-deb", "-f", str(path)], capture_output=True, text=True, check=False), "-f")
    fields: dict[str, str] = {}
    name = ""
    for line in text.splitlines():
        if line.startswith((" ", "\t")) and name:
            fields[name] += " " + line.strip()
        elif ": " in line:
            name, value = line.split(": ", 1)
            fields[name] = value.strip()
    return fields


def check_deb(version: str) -> str:
    """dpkg-deb -I and -c: the fields, and the files under /opt, /usr/bin and /usr/share."""
    path = _deb_path(version)
    info = _ok(subprocess.run(["dpkg-deb", "-I", str(path)], capture_output=True, text=True, check=False), "-I")
    _require("control archive" in info and " md5sums" in info, f"dpkg-deb -I shows no control and md5sums:\n{info}")
    fields = _control_fields(path)
    _require(fields.get("Package") == deb_package.PACKAGE, f"Package: {fields.get('Package')}")
    _require(fields.get("Version") == version, f"Version: {fields.get('Version')}, not {version}")
    _require(fields.get("Architecture") == deb_package.architecture(), f"Architecture: {fields.get('Architecture')}")
    depends = {d.strip().split(" ")[0] for d in fields.get("Depends", "").split(",")}
    lacking = [name for name in ("libc6", *BARE_SYSTEM_NEEDS) if name not in depends]
    _require(not lacking, f"Depends lacks {', '.join(lacking)}")
    listing = _ok(subprocess.run(["dpkg-deb", "-c", str(path)], capture_output=True, text=True, check=False), "-c")
    entries = {}
    for line in listing.splitlines():  # mode owner size date time path [-> target]
        parts = line.split(None, 5)
        name, _, target = parts[5].partition(" -> ")
        entries[name.rstrip("/")] = (parts[0], parts[1], target)
    prefix = f"./{deb_package.PREFIX}"
    for program in PROGRAMS:
        mode, owner, _ = entries.get(f"{prefix}/{program}", ("", "", ""))
        _require(mode == "-rwxr-xr-x" and owner == "root/root", f"{prefix}/{program}: {mode} {owner}")
        _, _, target = entries.get(f"./usr/bin/{program}", ("", "", ""))
        _require(target == f"/{deb_package.PREFIX}/{program}", f"/usr/bin/{program} does not link to /opt")
    expected = [
        f"./usr/share/applications/{dist_build.DESKTOP_FILE}",
        *(f"./usr/share/icons/hicolor/{s}x{s}/apps/{dist_build.ICON_NAME}.png" for s in dist_build.ICON_SIZES),
        f"./usr/share/doc/{deb_package.PACKAGE}/copyright",
    ]
    missing = [name for name in expected if name not in entries]
    _require(not missing, f"missing from the .deb: {', '.join(missing)}")
    owners = {owner for _, owner, _ in entries.values()}
    _require(owners == {"root/root"}, f"files owned by {owners - {'root/root'}}")
    return f"{path.name}: {len(entries)} entries, Depends has {', '.join(BARE_SYSTEM_NEEDS)}"


def check_deb_payload(version: str) -> str:
    """The .deb's own copy of the bundle, unpacked, passes the self-test."""
    path = _deb_path(version)
    with tempfile.TemporaryDirectory(prefix="inventory-sync-deb-") as tmp:
        _ok(subprocess.run(["dpkg-deb", "-x", str(path), tmp], capture_output=True, text=True, check=False), "-x")
        folder = Path(tmp) / deb_package.PREFIX
        check_self_test(folder)
        out = _ok(_run(folder / "inventory-sync", "--version"), "inventory-sync --version").strip()
    return f"unpacked with dpkg-deb -x: the self-test passed, {out}"


def main() -> int:
    """Run every check; 0 when all passed, 1 naming the first that failed."""
    version = dist_build.project_version()
    checks: list[tuple[str, Callable[[], str]]] = [
        ("bundle", lambda: check_self_test(BUNDLE)),
        ("cli", lambda: check_cli(BUNDLE, version)),
        ("tar.gz", lambda: check_tarball(version)),
        ("deb", lambda: check_deb(version)),
        ("deb payload", lambda: check_deb_payload(version)),
    ]
    started = time.perf_counter()
    for name, check in checks:
        t0 = time.perf_counter()
        try:
            detail = check()
        except (CheckError, OSError, subprocess.SubprocessError) as exc:
            print(f"dist-test failed at '{name}': {exc}", file=sys.stderr)
            return 1
        print(f"dist-test: {name}: ok ({detail}; {time.perf_counter() - t0:.1f} s)", flush=True)
    print(f"dist-test passed in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
