"""A replicator's status in words and a colour, as a peer row and the status bar show it (no widgets)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import IntEnum

from engine.replication.replicator_types import ActivityLevel, ReplicatorStatus
from inventory_qt.errors import describe_error

__all__ = ["PeerState", "StatusWords", "status_words"]


class PeerState(IntEnum):
    """What a peer row shows, in order of urgency."""

    DISCONNECTED = 0
    CONNECTING = 1
    IDLE = 2
    BUSY = 3
    OFFLINE = 4
    ERROR = 5


#: Colours (hex RGB) per state: grey, blue, green, blue, orange, red.
STATE_COLOURS = {
    PeerState.DISCONNECTED: "#6b6b6b",
    PeerState.CONNECTING: "#1f5fbf",
    PeerState.IDLE: "#1e7d32",
    PeerState.BUSY: "#1f5fbf",
    PeerState.OFFLINE: "#b25e00",
    PeerState.ERROR: "#c62828",
}


@dataclass(frozen=True, slots=True)
class StatusWords:
    """The words, the state (for the colour) and, when busy, the progress."""

    text: str
    state: PeerState
    completed: int = 0
    total: int = 0

    @property
    def colour(self) -> str:
        """The text colour for the state."""
        return STATE_COLOURS[self.state]


def status_words(status: ReplicatorStatus, *, retry_left: float | None = None) -> StatusWords:
    """Disconnected, Connecting, Connected (idle), Busy (n of m), Offline (retrying in N s), or Error: reason.

    ``retry_left`` is the time left before the next attempt, when the caller counts it down;
    otherwise the status's own ``retry_in`` is shown.
    """
    activity = status.activity
    if activity is ActivityLevel.STOPPED:
        if status.error is not None:
            return StatusWords(f"Error: {describe_error(status.error)}", PeerState.ERROR)
        return StatusWords("Disconnected", PeerState.DISCONNECTED)
    if activity is ActivityLevel.CONNECTING:
        return StatusWords("Connecting\u2026", PeerState.CONNECTING)
    if activity is ActivityLevel.IDLE:
        return StatusWords("Connected (idle)", PeerState.IDLE)
    if activity is ActivityLevel.BUSY:
        done, total = status.progress.completed, status.progress.total
        text = f"Busy: {done:,} of {total:,}" if total else "Busy"
        return StatusWords(text, PeerState.BUSY, done, total)
    wait = retry_left if retry_left is not None else status.retry_in
    seconds = max(0, math.ceil(wait)) if wait is not None else None
    text = "Offline" if seconds is None else f"Offline (retrying in {seconds} s)"
    if status.error is not None:
        reason = (describe_error(status.error) or "").rstrip(".")
        text += f": {reason[:1].lower()}{reason[1:]}"
    return StatusWords(text, PeerState.OFFLINE)
