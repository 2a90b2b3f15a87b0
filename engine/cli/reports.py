"""What ``sync`` and ``serve`` print while they run: connection, progress, documents, summaries.

Text for people: a progress bar (tqdm) when both output streams are a
terminal, plain lines when piped. JSON lines for scripts, with the schema
of ``docs/cli.md``. Nothing is reported that did not happen: a one-shot
``sync`` ends ``done`` only if every document went across.
"""

from __future__ import annotations

import asyncio
import shlex
import time
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from tqdm import tqdm

from engine.cli.output import Output
from engine.replication.errors import BlipError, CertificateChangedError
from engine.replication.listener import ConnectionEvent, URLEndpointListener
from engine.replication.replicator import Replicator
from engine.replication.replicator_types import (
    ActivityLevel,
    DocumentReplication,
    ReplicatedDocument,
    ReplicatorStatus,
    ReplicatorType,
)
from engine.replication.trust_store import key_to_text, peer_key

__all__ = ["ServeReport", "SyncReport"]

#: Seconds before the first plain progress line (a short transfer shows none), and between them;
#: and between JSON progress events.
PROGRESS_DELAY = 1.0
PROGRESS_INTERVAL = 2.0
JSON_PROGRESS_INTERVAL = 0.5
#: Seconds over which a continuous sync's documents are counted into one line.
DOCUMENTS_INTERVAL = 1.0
#: Seconds between ``serve``'s summary lines while a client replicates.
SUMMARY_INTERVAL = 10.0


def _is_http(error: BaseException | None, status: HTTPStatus) -> bool:
    """Whether ``error`` is the peer's answer with this HTTP status (an ``HTTP`` domain BLIP error)."""
    return isinstance(error, BlipError) and error.domain == "HTTP" and error.code == status


def _plural(count: int, word: str) -> str:
    return f"{count:,} {word}" if count == 1 else f"{count:,} {word}s"


class SyncReport:
    """Follows one replicator and prints what happens to it."""

    def __init__(
        self, replicator: Replicator, out: Output, *, continuous: bool, command: Callable[..., str] | None = None
    ) -> None:
        self.replicator = replicator
        self.out = out
        #: the command line a user would type for this user (``command_for``): printed in hints
        self.command = command or (lambda *words: shlex.join(["inventory-sync", *words]))
        self.continuous = continuous
        self.started = time.monotonic()
        #: the last outcome of each document in each direction: a failure a later retry mended is no failure
        self.outcomes: dict[tuple[bool, str], ReplicatedDocument] = {}
        self._activity = ActivityLevel.STOPPED
        self._connected = False
        self._bar: tqdm[Any] | None = None
        self._last_progress = 0.0
        self._counts = {True: 0, False: 0}
        self._counted_since = time.monotonic()
        self._flush: asyncio.TimerHandle | None = None
        replicator.add_change_listener(self._status)
        replicator.add_document_listener(self._documents)

    @property
    def url(self) -> str:
        """Where the replicator connects: a followed peer's latest URL (``sync --peer``), else the one given."""
        return self.replicator.config.url

    # -- while it runs ------------------------------------------------------------------

    def _status(self, status: ReplicatorStatus) -> None:
        activity, previous = status.activity, self._activity
        self._activity = activity
        if activity is ActivityLevel.CONNECTING and previous is not ActivityLevel.CONNECTING:
            self._connected = False
            self.out.record({"event": "connecting", "url": self.url}, f"connecting to {self.url}")
        elif activity in (ActivityLevel.BUSY, ActivityLevel.IDLE) and not self._connected:
            self._connected = True
            protocol = self.replicator.protocol
            self.out.record(
                {"event": "connected", "url": self.url, "protocol": protocol},
                f"connected to {self.url} ({protocol})",
            )
        elif activity is ActivityLevel.OFFLINE and previous is not ActivityLevel.OFFLINE:
            self._close_bar()
            wait = status.retry_in or 0.0
            self.out.record(
                {"event": "offline", "error": str(status.error) if status.error else None, "retry_in": wait},
                f"offline: {status.error}; retrying in {wait:.0f} s",
            )
        if activity is not previous and self.out.json_lines:
            self.out.record({"event": "status", "activity": activity.name.lower(), **self._progress_fields(status)}, "")
        if activity in (ActivityLevel.BUSY, ActivityLevel.IDLE):
            self._progress(status)

    @staticmethod
    def _progress_fields(status: ReplicatorStatus) -> dict[str, int]:
        return {"completed": status.progress.completed, "total": status.progress.total}

    def _progress(self, status: ReplicatorStatus) -> None:
        completed, total = status.progress.completed, status.progress.total
        if self.out.terminal and not self.continuous:
            if self._bar is None and total:
                self._bar = tqdm(total=total, unit="doc", desc="syncing", leave=False, dynamic_ncols=True)
            if self._bar is not None:
                self._bar.total = max(total, completed)
                self._bar.n = completed
                self._bar.refresh()
            return
        now = time.monotonic()
        interval = JSON_PROGRESS_INTERVAL if self.out.json_lines else PROGRESS_INTERVAL
        if not self.out.json_lines and now - self.started < PROGRESS_DELAY:
            return
        if total and completed < total and now - self._last_progress >= interval:
            self._last_progress = now
            self.out.record(
                {"event": "progress", "completed": completed, "total": total},
                f"progress: {completed:,} of {total:,} documents",
            )

    def _documents(self, event: DocumentReplication) -> None:
        for document in event.documents:
            self.outcomes[(event.push, document.id)] = document
            if document.error is None:
                self._counts[event.push] += 1
        if self.continuous and self._flush is None:  # one line per second at most, and none left unsaid
            wait = max(0.0, DOCUMENTS_INTERVAL - (time.monotonic() - self._counted_since))
            self._flush = asyncio.get_running_loop().call_later(wait, self.flush_documents)

    def flush_documents(self) -> None:
        """Print the documents received and sent since the last line (continuous runs)."""
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        self._counted_since = time.monotonic()
        for push, count in self._counts.items():
            if count:
                verb, direction = ("sent", "push") if push else ("received", "pull")
                self.out.record(
                    {"event": "documents", "direction": direction, "count": count},
                    f"{verb} {_plural(count, 'document')}",
                )
        self._counts = {True: 0, False: 0}

    def _close_bar(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    # -- at the end ------------------------------------------------------------------------

    def failed(self) -> list[tuple[bool, ReplicatedDocument]]:
        """Documents whose last outcome in a direction was a failure."""
        return [(push, doc) for (push, _), doc in self.outcomes.items() if doc.error is not None]

    def _totals(self) -> dict[str, Any]:
        return {
            "pushed": self.replicator.pushed,
            "pulled": self.replicator.pulled,
            "seconds": round(time.monotonic() - self.started, 3),
        }

    def _totals_text(self) -> str:
        return f"pushed {self.replicator.pushed:,}, pulled {_plural(self.replicator.pulled, 'document')}"

    def finish(self, *, interrupted: str | None) -> int:
        """Print how it ended; return the exit code (0 only if everything it promised happened)."""
        self._close_bar()
        if self.continuous:
            self.flush_documents()
        status = self.replicator.status
        if status.error is not None and interrupted is None:
            message = str(status.error)
            if isinstance(status.error, CertificateChangedError):
                peer = key_to_text(status.error.trust_key or peer_key(status.error.host, status.error.port))
                accept = self.command("trust", "accept", peer, status.error.new_fingerprint)
                message += f" (to trust it after checking: {accept})"
            elif (
                _is_http(status.error, HTTPStatus.FORBIDDEN) and self.replicator.config.type is not ReplicatorType.PULL
            ):  # a read-only peer refuses what we offer it
                message += f" ({self._totals_text()}; --pull takes its changes without offering ours)"
            self.out.error(message)
            return 1
        for push, doc in self.failed():
            direction = "push" if push else "pull"
            data = {"event": "document_failed", "direction": direction, "id": doc.id, "rev": doc.rev_id}
            self.out.record({**data, "error": str(doc.error)}, f"not synced ({direction}): {doc.id}: {doc.error}")
        failed = len(self.failed())
        if interrupted is not None and not self.continuous:
            code = 130 if interrupted == "SIGINT" else 143
            self.out.record(
                {"event": "interrupted", "signal": interrupted, **self._totals(), "failed": failed},
                f"interrupted ({interrupted}): {self._totals_text()} so far; the next sync goes on from there",
            )
            return code
        if interrupted is not None:
            self.out.record(
                {"event": "stopped", "signal": interrupted, **self._totals(), "failed": failed},
                f"stopped: {self._totals_text()}" + (f"; {failed} not synced" if failed else ""),
            )
            return 0 if not failed else 1
        if failed:
            self.out.record(
                {"event": "incomplete", **self._totals(), "failed": failed},
                f"incomplete: {self._totals_text()}; {failed} not synced",
            )
            if self.replicator.config.type is ReplicatorType.PUSH and any(
                _is_http(doc.error, HTTPStatus.CONFLICT) for _, doc in self.failed()
            ):
                self.out.note("the peer changed them too: a sync that also pulls (without --push) merges the changes")
            return 1
        seconds = time.monotonic() - self.started
        self.out.record({"event": "done", **self._totals()}, f"done: {self._totals_text()} in {seconds:.1f} s")
        return 0


class ServeReport:
    """Prints a listener's connections, and a summary line now and then while clients replicate."""

    def __init__(self, listener: URLEndpointListener, out: Output) -> None:
        self.listener = listener
        self.out = out
        self._last = (0, 0)  # revisions sent and received at the last line
        listener.add_connection_listener(self._connection)

    def _connection(self, event: ConnectionEvent) -> None:
        who = event.user or "someone"
        if event.connected:
            self.out.record(
                {"event": "connected", "peer": event.peer, "user": event.user}, f"connected: {who} from {event.peer}"
            )
        else:
            self.out.record(
                {"event": "disconnected", "peer": event.peer, "user": event.user, "code": event.close_code},
                f"disconnected: {who} from {event.peer} ({event.close_code})",
            )

    def summarize(self) -> None:
        """One line on connections and traffic, if a client replicated since the last one."""
        status, stats = self.listener.status, self.listener.stats
        traffic = (stats.revs_sent, stats.revs_received)
        # a continuous client is mostly idle between edits: what went across since the last line counts
        if traffic == self._last and not status.active_connection_count:
            return
        self._last = traffic
        self.out.record(
            {
                "event": "summary",
                "connected": status.connection_count,
                "active": status.active_connection_count,
                "revs_sent": stats.revs_sent,
                "revs_received": stats.revs_received,
                "deltas_sent": stats.deltas_sent,
            },
            f"summary: {_plural(status.connection_count, 'client')} connected, {status.active_connection_count} "
            f"replicating; {_plural(stats.revs_sent, 'revision')} sent, {stats.revs_received:,} received since start",
        )
