"""Application entry point (``inventory-sync-app``, ``python -m inventory_qt``, ``make run``).

qasync runs the app's asyncio work inside the Qt event loop; the listener and
the replicators run on the session's engine thread
(:mod:`inventory_qt.engine_thread`), database work on its database thread.
Before Qt starts, the platform check says what a desktop is missing instead
of letting Qt abort. ``--interface IP`` limits discovery to addresses of this
machine.

``--screenshot OUTDIR`` signs in as ``--user`` without the dialog (password
from ``INVENTORY_PASSWORD``), renders the sign-in screen, each tab and the
Settings dialog to PNG files in OUTDIR and exits 0. For the Listener tab it
starts the listener on 127.0.0.1 (advertised if the settings say so); the
Browser tab is taken once a peer was found on the network, or after
:data:`PEER_WAIT` seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import qasync
from PySide6.QtCore import Qt
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import QApplication

from engine.replication.discovery import quiet_zeroconf_warnings
from inventory_qt import platform_check, self_test
from inventory_qt.discovery_bridge import INTERFACES_ENV
from inventory_qt.errors import describe_error
from inventory_qt.ui.main_window import MainWindow

__all__ = ["PASSWORD_ENV", "main", "take_screenshots"]

log = logging.getLogger(__name__)

#: Where ``--screenshot`` reads the password from.
PASSWORD_ENV = "INVENTORY_PASSWORD"  # noqa: S105  (a variable name, not a password)
#: Seconds the screenshots wait for pictures to load before rendering anyway.
PICTURE_WAIT = 10.0
#: Seconds the screenshot run waits for the listener's advert, then for a peer on the network.
ADVERT_WAIT = 5.0
PEER_WAIT = 2.0


def interface_address(text: str) -> str:
    """An interface's IP address, for argparse (``--interface``)."""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an IP address: {text!r} (give an address of this machine)") from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="inventory-sync-app", description="Inventory Sync desktop app.")
    parser.add_argument("--user", default=None, help="user name to fill in (and sign in as, with --screenshot)")
    parser.add_argument("--data-dir", type=Path, default=None, help="where users' databases live")
    parser.add_argument(
        "--screenshot",
        type=Path,
        metavar="OUTDIR",
        default=None,
        help=f"sign in (password from ${PASSWORD_ENV}), save each screen as PNG in OUTDIR, exit",
    )
    parser.add_argument(
        "--interface",
        dest="interfaces",
        action="append",
        type=interface_address,
        metavar="IP",
        help=f"an address of this machine for discovery (repeatable; default: ${INTERFACES_ENV}, else every interface)",
    )
    parser.add_argument("--verbose", action="store_true", help="log at debug level")
    # installers (issue 15): check this installation offscreen, see inventory_qt/self_test.py
    parser.add_argument("--self-test", action="store_true", help="check this installation offscreen and exit")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Start the app; return its exit code."""
    parser = _parser()
    args, qt_args = parser.parse_known_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    if not args.verbose:
        quiet_zeroconf_warnings()
    if args.self_test:  # offscreen, on a temporary data directory: no platform check, no window
        return self_test.run_self_test(verbose=args.verbose)
    password = ""
    if args.screenshot is not None:
        if not args.user:
            parser.error("--screenshot needs --user")
        password = os.environ.pop(PASSWORD_ENV, "")  # out of the environment the engine process inherits
        if not password:
            parser.error(f"--screenshot reads the password from ${PASSWORD_ENV}, which is not set")
    problem = platform_check.check()
    if problem is not None:  # Qt would abort with a misleading message
        sys.stderr.write(f"inventory-sync-app: {problem}\n")
        return 1
    return _run(args, qt_args, password)


def _run(args: argparse.Namespace, qt_args: list[str], password: str) -> int:
    app = QApplication([sys.argv[0], *qt_args])
    app.setApplicationName("Inventory Sync")
    app.setQuitOnLastWindowClosed(False)  # the window closes after logging out; then the loop ends
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    window = MainWindow(args.data_dir, interfaces=args.interfaces)
    if args.user:
        window.login.reset(args.user)
    with loop:
        if args.screenshot is not None:
            code: int = loop.run_until_complete(take_screenshots(window, args.user, password, args.screenshot))
            return code
        closed = asyncio.Event()
        app.lastWindowClosed.connect(closed.set)
        window.show()
        self_test.exit_when_shown(window)  # bench/startup.py's probe; does nothing unless asked
        loop.run_until_complete(closed.wait())
    return 0


async def take_screenshots(window: MainWindow, user: str, password: str, outdir: Path) -> int:
    """Sign in, save the sign-in screen, each tab and the Settings dialog as PNGs; return the exit code."""
    outdir.mkdir(parents=True, exist_ok=True)
    window.resize(860, 620)
    window.show()
    window.login.password.setText(password)
    await _settle()
    _save(window.grab(), outdir / "login.png")
    problems: list[str] = []
    await window.sign_in(user, password)
    if window.session is None or window.list_tab is None:
        sys.stderr.write(f"inventory-sync-app: cannot sign in: {window.login.status.text()}\n")
        return 1
    try:
        await _pictures_loaded(window)
        for index, name in enumerate(("list", "listener", "browser")):
            if name == "listener":
                await _listening(window)
            elif name == "browser":
                await _until(
                    lambda: window.browser_tab is not None and window.browser_tab.model.rowCount() > 0, PEER_WAIT
                )
            window.tabs.setCurrentIndex(index)
            await _settle()
            _save(window.grab(), outdir / f"{name}.png")
        dialog = window.open_settings()
        if dialog is not None:
            await _settle()
            _save(dialog.grab(), outdir / "settings.png")
            dialog.reject()
    except Exception as exc:  # say what went wrong in words, still log out cleanly
        problems.append(describe_error(exc) or str(exc))
    await window.log_out()
    window.close()
    if problems:
        sys.stderr.write(f"inventory-sync-app: {problems[0]}\n")
        return 1
    return 0


async def _settle() -> None:
    """Let Qt lay out and paint (a few turns of the event loop)."""
    for _ in range(3):
        await asyncio.sleep(0.05)


async def _until(condition: Callable[[], bool], timeout: float) -> bool:
    """Whether ``condition`` came true within ``timeout`` seconds (checked every 20 ms)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition() and loop.time() < deadline:
        await asyncio.sleep(0.02)
    return condition()


async def _listening(window: MainWindow) -> None:
    """Start the listener on 127.0.0.1 and wait (a bounded time) for its advert, for the Listener tab's picture."""
    assert window.listener_tab is not None and window.bridge is not None
    bridge = window.bridge
    await window.listener_tab.start(host="127.0.0.1")
    await _until(lambda: not bridge.advertising.starting, ADVERT_WAIT)


async def _pictures_loaded(window: MainWindow) -> None:
    assert window.list_tab is not None
    tab = window.list_tab
    loop = asyncio.get_running_loop()
    deadline = loop.time() + PICTURE_WAIT
    for row in range(tab.model.rowCount()):  # asks for every thumbnail
        tab.model.data(tab.model.index(row, 0), Qt.ItemDataRole.DecorationRole)
    while tab.thumbnails.loading and loop.time() < deadline:
        await asyncio.sleep(0.02)


def _save(pixmap: QPixmap, path: Path) -> None:
    if not pixmap.save(str(path), "PNG"):
        raise OSError(f"cannot write {path}")
    log.info("wrote %s", path)
