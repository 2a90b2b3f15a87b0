"""How long the bundled app takes from its start to a usable window (target: under 2 s).

Each run starts ``dist/inventory-sync/inventory-sync-app`` (built by ``make dist``)
offscreen on a fresh temporary data directory, with ``INVENTORY_SYNC_EXIT_WHEN_SHOWN=1``:
the app then prints ``window shown <monotonic seconds>`` once its main window (the
sign-in screen) has painted and the event loop has come back idle, and closes
(:func:`inventory_qt.self_test.exit_when_shown`). The figure is that time minus
the moment the process was started, on the same monotonic clock: the bootloader
unpacking nothing (one folder), Python starting, the imports, Qt's platform
plugin, the window's construction and first paint. Printed: every run, then the
median and the maximum, and the bundle's size.

    .venv/bin/python bench/startup.py [--runs 7] [--bundle dist/inventory-sync] [--source]

``--source`` times ``python -m inventory_qt`` from the work tree instead, for comparison.
The first run may read the bundle from disk; later runs find it in the page cache,
as a user's second start does.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROBE_ENV = "INVENTORY_SYNC_EXIT_WHEN_SHOWN"  # inventory_qt.self_test.EXIT_WHEN_SHOWN_ENV
TARGET = 2.0
TIMEOUT = 60.0


def _command(args: argparse.Namespace) -> list[str]:
    if args.source:
        return [sys.executable, "-m", "inventory_qt"]
    program = args.bundle / "inventory-sync-app"
    if not program.is_file():
        raise SystemExit(f"{program} is missing: build it with `make dist`")
    return [str(program)]


def one_run(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(seconds to the shown window, seconds until the process exited) of one start."""
    with tempfile.TemporaryDirectory(prefix="inventory-sync-startup-") as tmp:
        started = time.monotonic()
        result = subprocess.run(
            [*command, "--data-dir", tmp], capture_output=True, text=True, env=env, timeout=TIMEOUT, check=False
        )
        ended = time.monotonic()
    shown = [line for line in result.stdout.splitlines() if line.startswith("window shown ")]
    if result.returncode != 0 or not shown:
        raise SystemExit(f"the app did not report a shown window (exit {result.returncode}):\n{result.stderr}")
    return float(shown[0].split()[-1]) - started, ended - started


def folder_size(path: Path) -> str:
    size = sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() or p.is_symlink())
    return f"{size / 1e6:.1f} MB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--bundle", type=Path, default=ROOT / "dist" / "inventory-sync")
    parser.add_argument("--source", action="store_true", help="time python -m inventory_qt from the work tree")
    args = parser.parse_args()
    command = _command(args)
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env |= {"QT_QPA_PLATFORM": "offscreen", PROBE_ENV: "1"}
    if args.source:
        env["PYTHONPATH"] = str(ROOT)
    what = "source (python -m inventory_qt)" if args.source else str(args.bundle)
    print(f"startup of {what}, offscreen, {args.runs} runs")
    shown: list[float] = []
    for run in range(1, args.runs + 1):
        window, total = one_run(command, env)
        shown.append(window)
        print(f"  run {run}: window shown after {window:.3f} s (process exited after {total:.3f} s)")
    median, worst = statistics.median(shown), max(shown)
    verdict = "under" if worst < TARGET else "OVER"
    print(f"window shown: median {median:.3f} s, max {worst:.3f} s ({verdict} the {TARGET:.0f} s target)")
    if not args.source:
        print(f"bundle size: {folder_size(args.bundle)} ({args.bundle})")


if __name__ == "__main__":
    main()
