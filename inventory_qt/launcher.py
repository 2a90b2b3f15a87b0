"""The ``inventory-sync-app`` command: nothing heavy is imported until it runs.

The app's sync engine runs in a child process started with multiprocessing's
"spawn" method, which imports the parent's main script again in the child.
For the installed command that script imports this module only, so the
child does not load Qt (about a second and some 40 MB saved per child).
"""

from __future__ import annotations

__all__ = ["main"]


def main() -> int:
    """Start the app (see :func:`inventory_qt.app.main`); return its exit code."""
    from inventory_qt.app import main as app_main  # noqa: PLC0415  (the point of this module)

    return app_main()
