"""``inventory-sync``: the headless command line over the engine.

Exit codes: 0 success; 1 any other error (one line on stderr; the traceback
only with ``--debug``); 2 a usage error (the command as given cannot work:
bad arguments, a URL or a configuration that cannot be used); 130 and 143 a
one-shot ``sync`` interrupted by SIGINT or SIGTERM. With ``--json`` every
output record is one JSON object per line (schema: ``docs/cli.md``); with
``--quiet`` only errors are printed.
"""

from __future__ import annotations

import argparse
import getpass
import importlib.metadata
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from engine.cli.discovery_commands import register as register_discovery_commands
from engine.cli.output import Output, UsageError
from engine.cli.security_commands import register as register_security_commands
from engine.cli.store_commands import register as register_store_commands
from engine.cli.sync_commands import register as register_sync_commands
from engine.errors import EngineError
from engine.replication.discovery import quiet_zeroconf_warnings
from engine.replication.errors import ConfigurationError

__all__ = ["build_parser", "main"]

_GLOBALS = (("data_dir", None), ("user", None), ("json", False), ("quiet", False), ("debug", False))


def _global_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", type=Path, default=argparse.SUPPRESS, help="data directory (default: per user)")
    common.add_argument("--user", default=argparse.SUPPRESS, help="whose database to use (default: login name)")
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="one JSON object per line")
    common.add_argument("--quiet", "-q", action="store_true", default=argparse.SUPPRESS, help="print only errors")
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="log details and tracebacks")
    return common


def _version() -> str:
    """The installed version (in a bundle, from the dist-info the spec ships)."""
    try:
        return importlib.metadata.version("inventory-sync")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser with every command registered."""
    common = _global_options()
    parser = argparse.ArgumentParser(
        prog="inventory-sync",
        description="Inventory Sync without a window: the list, raw documents, and sync with peers.",
        epilog="Exit codes: 0 done, 1 failed, 2 usage error, 130/143 sync interrupted. Details: docs/cli.md",
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    register_store_commands(commands, common)
    register_sync_commands(commands, common)
    register_security_commands(commands, common)
    register_discovery_commands(commands, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    for name, default in _GLOBALS:
        if not hasattr(args, name):
            setattr(args, name, default)
    if args.user is None:
        args.user = getpass.getuser()
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.ERROR if args.quiet else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not args.debug:
        quiet_zeroconf_warnings()
    out = Output(json_lines=args.json, quiet=args.quiet)
    try:
        return int(args.handler(args, out))
    except KeyboardInterrupt:
        out.error("interrupted")
        return 130
    except BrokenPipeError:
        return 1
    except (UsageError, ConfigurationError) as exc:
        if args.debug:
            logging.exception("unusable command")
        out.error(str(exc))
        return 2
    except (EngineError, OSError) as exc:
        if args.debug:
            logging.exception("command failed")
        out.error(str(exc))
        return 1
    except Exception as exc:
        if args.debug:
            logging.exception("command failed")
        out.error(f"internal error: {type(exc).__name__}: {exc}")
        return 1
