"""``inventory-sync-app --self-test``: does this installation work? (issue 15)

Runs offscreen (it sets ``QT_QPA_PLATFORM=offscreen`` itself) on a temporary
data directory, never the user's, and goes through what a user's first sync
needs, one named step at a time:

1. ``resources``: the starter inventory's list and JPEG pictures, and the app's icons, are found
   (through ``importlib.resources``: in a PyInstaller bundle they live under ``sys._MEIPASS``);
2. ``seed``: a user is created with the starter list;
3. ``listener``: that user's database is served over TLS (a generated identity) on 127.0.0.1,
   port 0, with password authentication;
4. ``replicate``: a second temporary database pushes and pulls with it through the real
   replicator, pinning the listener's certificate and signing in with the password;
5. ``pictures``: the list arrived with every picture (blobs present, JPEG, the same digests);
6. ``push``: an edit made on the second database reaches the listener's;
7. ``process``: a child process starts the way ``multiprocessing`` spawns one (in a bundle:
   the program itself again, diverted by ``multiprocessing.freeze_support()`` in ``main``);
8. ``qt``: a QApplication starts on the offscreen platform, decodes a JPEG picture (Qt's
   image format plugin) and the PNG icon, and shows and renders the main window.

It prints one line per step and exits 0, or names the failing step and exits
1. A desktop platform plugin (xcb or wayland) that could not load here is
reported as a note, not a failure: a server needs none.

:func:`exit_when_shown` serves ``bench/startup.py``: with
``INVENTORY_SYNC_EXIT_WHEN_SHOWN=1`` the app prints ``window shown <monotonic
seconds>`` once its main window has painted, then closes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import multiprocessing
import os
import secrets
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from engine.database import Database
from engine.inventory import Item, read_items, set_quantity
from engine.replication.auth import BasicAuthenticator
from engine.replication.listener import URLEndpointListener
from engine.replication.replicator import Replicator
from engine.replication.replicator_types import ReplicatorConfiguration
from engine.replication.server_validation import ServerValidation
from engine.replication.tls import TLSIdentity
from engine.seeding import load_starter_inventory
from engine.userdata import open_database, open_user_database
from inventory_qt.engine_config import listener_setup
from inventory_qt.settings import ListenerSettings

if TYPE_CHECKING:
    from PySide6.QtWidgets import QWidget

__all__ = ["EXIT_WHEN_SHOWN_ENV", "ICON_FILE", "SelfTestError", "exit_when_shown", "run_self_test"]

log = logging.getLogger(__name__)

#: ``bench/startup.py`` sets this to have the app exit once its main window has painted.
EXIT_WHEN_SHOWN_ENV = "INVENTORY_SYNC_EXIT_WHEN_SHOWN"
#: The icon the self-test loads (``resources/icons/``, drawn by ``packaging/make_icons.py``).
ICON_FILE = "inventory-sync-256.png"
#: Seconds any one network step may take before the self-test gives up on it.
STEP_TIMEOUT = 30.0
HOST = "127.0.0.1"
USER = "self-test"
JPEG_MAGIC = b"\xff\xd8\xff"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class SelfTestError(Exception):
    """A check of the self-test found something wrong (the message says what)."""


@dataclass
class _State:
    """What the steps hand on to each other."""

    data_dir: Path
    password: str
    starter_count: int = 0
    picture: bytes = b""
    server: Database | None = None
    peer: Database | None = None
    listener: URLEndpointListener | None = None
    identity: TLSIdentity | None = None
    runner: asyncio.Runner | None = None
    notes: list[str] | None = None


def run_self_test(out: TextIO | None = None, *, verbose: bool = False) -> int:
    """Run every step; return 0 when all passed, 1 at the first failure (named on ``out``)."""
    os.environ["QT_QPA_PLATFORM"] = "offscreen"  # before any QApplication exists
    write = _writer(out if out is not None else sys.stdout)
    if not verbose:
        logging.getLogger().setLevel(logging.WARNING)  # the engine's info lines are not the test's output
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="inventory-sync-self-test-") as tmp:
        state = _State(Path(tmp), secrets.token_urlsafe(16), notes=[])
        try:
            failed = _run_steps(state, write, verbose=verbose)
        finally:
            _close(state)
    if failed:
        return 1
    for note in state.notes or []:
        write(f"self-test: note: {note}")
    write(f"self-test passed in {time.perf_counter() - started:.2f} s")
    return 0


def _writer(stream: TextIO | None) -> Callable[[str], None]:
    """Print lines to ``stream``; a windowed build on Windows has no stdout, and then nothing is printed."""

    def write(line: str) -> None:
        if stream is not None:
            stream.write(line + "\n")
            stream.flush()

    return write


def _run_steps(state: _State, write: Callable[[str], None], *, verbose: bool) -> bool:
    """Run the steps in order; True when one failed."""
    steps: list[tuple[str, Callable[[_State], str]]] = [
        ("resources", _check_resources),
        ("seed", _seed_user),
        ("listener", lambda s: _runner(s).run(_start_listener(s))),
        ("replicate", lambda s: _runner(s).run(_replicate(s))),
        ("pictures", _check_pictures),
        ("push", _push_an_edit),
        ("process", _check_child_process),
        ("qt", _check_qt),
    ]
    for name, step in steps:
        t0 = time.perf_counter()
        try:
            detail = step(state)
        except Exception as exc:
            write(f"self-test failed at step '{name}': {_words(exc)}")
            if verbose:
                write(traceback.format_exc().rstrip())
            return True
        write(f"self-test: {name}: ok ({detail}, {time.perf_counter() - t0:.2f} s)")
    return False


def _words(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, SelfTestError) else f"{type(exc).__name__}: {exc}"


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise SelfTestError(message)


def _runner(state: _State) -> asyncio.Runner:
    """One event loop for the network steps, so that the listener lives from one step to the next."""
    if state.runner is None:
        state.runner = asyncio.Runner()
    return state.runner


# -- the engine -------------------------------------------------------------------------------


def _check_resources(state: _State) -> str:
    starter = load_starter_inventory()
    _check(bool(starter), "the starter inventory is empty")
    for item in starter:
        _check(item.jpeg.startswith(JPEG_MAGIC), f"the starter picture of {item.key!r} is not a JPEG")
    icon = _icon()
    _check(icon.startswith(PNG_MAGIC), f"the icon {ICON_FILE} is not a PNG")
    state.starter_count = len(starter)
    state.picture = starter[0].jpeg
    return f"{len(starter)} starter items with JPEG pictures, icons"


def _icon() -> bytes:
    # one part per step (a MultiplexedPath in the bundle takes one under Python 3.11)
    return (resources.files("inventory_resources") / "icons" / ICON_FILE).read_bytes()


def _seed_user(state: _State) -> str:
    state.server = open_user_database(USER, state.data_dir)
    items = read_items(state.server)
    _check(len(items) == state.starter_count, f"the new user has {len(items)} items, not {state.starter_count}")
    return f"user {USER!r} with {len(items)} items in a temporary data directory"


async def _start_listener(state: _State) -> str:
    """The listener the app's Listener tab starts with its default settings (a generated
    certificate, the signed-in user's password), on the loopback address only."""
    assert state.server is not None
    setup = listener_setup(state.server, ListenerSettings(), USER, state.password)
    setup.configuration.host = HOST
    state.identity = setup.configuration.tls
    _check(state.identity is not None, "the default listener settings do not use TLS")
    assert state.identity is not None
    state.listener = URLEndpointListener(setup.configuration)
    await asyncio.wait_for(state.listener.start(), STEP_TIMEOUT)
    return f"wss://{HOST}:{state.listener.port}, password sign-in, SHA-256 {state.identity.fingerprint[:14]}..."


async def _replicate(state: _State) -> str:
    """One push-and-pull with the listener: its certificate pinned, signed in by password."""
    assert state.listener is not None and state.identity is not None
    if state.peer is None:
        state.peer = open_database(state.data_dir / "peer")
    config = ReplicatorConfiguration(
        database=state.peer,
        url=f"wss://{HOST}:{state.listener.port}/userdb",
        authenticator=BasicAuthenticator(USER, state.password),
        tls=ServerValidation.pinned(state.identity.certificate),
        max_attempts=1,
    )
    replicator = Replicator(config)
    replicator.start()
    try:
        status = await asyncio.wait_for(replicator.wait_stopped(), STEP_TIMEOUT)
    except TimeoutError:
        await replicator.stop()
        raise SelfTestError(f"the replication did not finish within {STEP_TIMEOUT:.0f} s") from None
    if status.error is not None:
        raise status.error
    return "pushed and pulled with a second database, the certificate pinned"


def _check_pictures(state: _State) -> str:
    assert state.server is not None and state.peer is not None
    sent, received = read_items(state.server), read_items(state.peer)
    _check(_rows(received) == _rows(sent), f"{len(received)} items arrived, not the {len(sent)} served")
    for item in received:
        _check(item.image is not None, f"{item.key!r} arrived without its picture")
        assert item.image is not None
        _check(state.peer.has_blob(item.image.digest), f"the picture of {item.key!r} did not arrive")
        data = state.peer.read_blob(item.image.digest)
        _check(data.startswith(JPEG_MAGIC), f"the picture of {item.key!r} is not a JPEG")
        _check(item.image.content_type == "image/jpeg", f"the picture of {item.key!r} is not typed image/jpeg")
    return f"{len(received)} items and {len(received)} JPEG pictures in the second database"


def _rows(items: list[Item]) -> list[tuple[str, int, str | None]]:
    return [(i.key, i.value, i.image.digest if i.image else None) for i in items]


def _push_an_edit(state: _State) -> str:
    assert state.server is not None and state.peer is not None and state.runner is not None
    first = read_items(state.peer)[0]
    set_quantity(state.peer, first.key, first.value + 1)
    state.runner.run(_replicate(state))
    now = {i.key: i.value for i in read_items(state.server)}
    _check(now.get(first.key) == first.value + 1, f"the edit of {first.key!r} did not reach the listener")
    return f"{first.key} = {first.value + 1} reached the listener"


def _check_child_process(state: _State) -> str:
    """Spawn a child process (as the engine's replication may) and have it digest a picture."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        pid, digest = pool.submit(_child_work, state.picture).result(timeout=STEP_TIMEOUT)
    _check(pid != os.getpid(), "the child process ran in this process")
    _check(digest == hashlib.sha256(state.picture).hexdigest(), "the child process computed a wrong digest")
    return f"spawned process {pid} answered"


def _child_work(data: bytes) -> tuple[int, str]:
    """Runs in the spawned child: its process ID and the SHA-256 of ``data``."""
    return os.getpid(), hashlib.sha256(data).hexdigest()


def _close(state: _State) -> None:
    if state.runner is not None:
        if state.listener is not None:
            with contextlib.suppress(Exception):
                state.runner.run(asyncio.wait_for(state.listener.stop(), STEP_TIMEOUT))
        state.runner.close()
    for db in (state.peer, state.server):
        if db is not None:
            with contextlib.suppress(Exception):
                db.close()


# -- Qt -----------------------------------------------------------------------------------------


def _check_qt(state: _State) -> str:
    from PySide6.QtGui import QGuiApplication, QImage, QImageReader  # noqa: PLC0415  (after QT_QPA_PLATFORM)
    from PySide6.QtWidgets import QApplication  # noqa: PLC0415

    from inventory_qt import platform_check  # noqa: PLC0415
    from inventory_qt.ui.main_window import MainWindow  # noqa: PLC0415

    app = QApplication.instance() or QApplication([sys.argv[0]])
    platform = QGuiApplication.platformName()
    _check(platform == "offscreen", f"Qt started the {platform!r} platform, not offscreen")
    formats = {bytes(f.data()).decode() for f in QImageReader.supportedImageFormats()}
    _check({"jpeg", "png"} <= formats, f"Qt cannot read JPEG and PNG here (it reads {', '.join(sorted(formats))})")
    picture = QImage.fromData(state.picture)
    _check(not picture.isNull(), "Qt cannot decode a starter picture (JPEG)")
    icon = QImage.fromData(_icon())
    _check(not icon.isNull(), "Qt cannot decode the icon (PNG)")
    window = MainWindow(state.data_dir)
    window.show()
    app.processEvents()
    shot = window.grab()
    _check(not shot.isNull() and shot.width() > 100, "the main window does not render")
    window.close()
    app.processEvents()
    problem = platform_check.check({"DISPLAY": ":0", "WAYLAND_DISPLAY": "wayland-0"})
    if problem is not None and state.notes is not None:
        state.notes.append(f"on a desktop: {problem}")
    return f"offscreen, JPEG and PNG, main window {shot.width()}x{shot.height()}"


def exit_when_shown(window: QWidget) -> None:
    """With ``$INVENTORY_SYNC_EXIT_WHEN_SHOWN`` set, print ``window shown <monotonic s>`` after the first paint, close.

    ``window`` is the main window. ``time.monotonic`` is the system's
    monotonic clock, so ``bench/startup.py`` compares it with its own.
    """
    if not os.environ.get(EXIT_WHEN_SHOWN_ENV):
        return
    from PySide6.QtCore import QEvent, QObject, QTimer  # noqa: PLC0415

    class _FirstPaint(QObject):
        def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802
            if event.type() == QEvent.Type.Paint:
                window.removeEventFilter(self)
                QTimer.singleShot(0, report)  # once this paint is done
            return False

    def report() -> None:
        sys.stdout.write(f"window shown {time.monotonic():.6f}\n")
        sys.stdout.flush()
        window.close()

    probe = _FirstPaint(window)
    window.installEventFilter(probe)
