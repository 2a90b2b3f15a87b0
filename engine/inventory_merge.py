"""A conflict resolver for the inventory list that merges item by item.

Three-way merge of two versions of ``doc::list`` against their common
ancestor, per item (matched by ``key``): a change made on one side only
survives; when both sides changed the same item, the side whose item has the
higher edit stamp wins (see
:class:`~engine.inventory.Item`), and on equal stamps the side with the
higher revision ID. Edit stamps make an item's newer state win even when its
value went back to an earlier one on the way. The result does not depend on
which side is local (the rule is symmetric), so whichever peer resolves a
conflict, the merged list is the same. Without a common ancestor the items of
both sides are kept, except that the app's starter list untouched (its first
revision, the same on every computer) gives way whole: a new user who syncs
before changing anything takes the shop's list, and no starter item joins it.
Both sides see the same two revision IDs, so both decide alike.

Every version is first checked with the list schema
(:func:`~engine.inventory.check_list_body`), so that a malformed version
never costs valid items: a malformed side counts as having made no change
(the valid side wins whole); a malformed base counts as unknown (the items
of both sides are kept); when both sides are malformed, Couchbase Lite's
rule (:func:`~engine.conflicts.default_resolver`) picks one.
"""

from __future__ import annotations

import logging
from typing import Any

from engine.conflicts import Conflict, Resolution, default_resolver
from engine.inventory import LIST_DOC_ID, InvalidListError, validate_list_revision
from engine.revid import compare_key
from engine.seeding import starter_list_revision

__all__ = ["ItemMergeResolver", "is_valid_list", "merge_lists"]

log = logging.getLogger(__name__)

_MISSING: Any = object()


def _merge_value(base: Any, high: Any, low: Any, *, low_wins_ties: bool = False) -> Any:
    """Three-way merge of one value: a one-sided change wins; when both changed, the winner of ties."""
    if high == low:
        return high
    if base is not _MISSING and high == base:
        return low
    if base is not _MISSING and low == base:
        return high
    return low if low_wins_ties else high


def _stamp(item: dict[str, Any] | None) -> int:
    edit = item.get("edit", 0) if item is not None else 0
    return edit if isinstance(edit, int) and not isinstance(edit, bool) else 0


def _merge_mapping(base: dict[str, Any] | None, high: dict[str, Any], low: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in [*high, *(k for k in low if k not in high)]:
        b = base.get(key, _MISSING) if base is not None else _MISSING
        h, lo = high.get(key, _MISSING), low.get(key, _MISSING)
        if h is _MISSING or lo is _MISSING:
            present = h if lo is _MISSING else lo
            if base is not None and b is not _MISSING and present == b:
                continue  # deleted on one side, unchanged on the other
            out[key] = present
            continue
        out[key] = _merge_value(b, h, lo)
    return out


def _by_key(items: Any) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    if isinstance(items, list):
        for item in items:
            if isinstance(item, dict) and isinstance(item.get("key"), str):
                out.setdefault(item["key"], item)
    return out


def is_valid_list(body: object) -> bool:
    """Whether ``body`` passes the list schema (:func:`~engine.inventory.check_list_body`)."""
    return _problem(body) is None


def _problem(body: object) -> str | None:
    try:
        validate_list_revision(LIST_DOC_ID, body, False)
    except InvalidListError as exc:
        return str(exc)
    return None


def merge_lists(base: dict[str, Any] | None, high: dict[str, Any], low: dict[str, Any]) -> dict[str, Any]:
    """Merge two list bodies against ``base`` (None when unknown); ``high`` wins ties.

    A side that breaks the list schema counts as unchanged: the other side is
    returned whole. A base that breaks it counts as unknown. When both sides
    break it, ``high`` is returned, as :func:`default_resolver` would choose.
    The result of merging valid lists is a valid list.
    """
    high_valid, low_valid = is_valid_list(high), is_valid_list(low)
    if not (high_valid and low_valid):
        return dict(low if low_valid else high)
    if base is not None and not is_valid_list(base):
        base = None
    return _merge_valid(base, high, low)


def _merge_valid(base: dict[str, Any] | None, high: dict[str, Any], low: dict[str, Any]) -> dict[str, Any]:
    base_items = _by_key(base.get("items")) if base is not None else None
    high_items, low_items = _by_key(high.get("items")), _by_key(low.get("items"))
    merged_items = []
    for key in [*high_items, *(k for k in low_items if k not in high_items)]:
        b = base_items.get(key) if base_items is not None else None
        h, lo = high_items.get(key), low_items.get(key)
        if h is None or lo is None:
            present = h if lo is None else lo
            assert present is not None
            if base_items is not None and b is not None and present == b:
                continue  # removed on one side, unchanged on the other
            merged_items.append(present)
            continue
        # a whole item: a one-sided change wins; when both sides changed it, the newer edit
        # (higher stamp), then the high side
        merged_items.append(_merge_value(_MISSING if b is None else b, h, lo, low_wins_ties=_stamp(lo) > _stamp(h)))
    top = _merge_mapping(
        base, {k: v for k, v in high.items() if k != "items"}, {k: v for k, v in low.items() if k != "items"}
    )
    return {**top, "items": merged_items}


class ItemMergeResolver:
    """Merges conflicting versions of the inventory list; other documents use Couchbase Lite's rule.

    ``untouched`` is the revision ID of a list that gives way whole to any
    other (by default the app's starter list as a new database gets it,
    :func:`~engine.seeding.starter_list_revision`, computed at the first conflict).
    """

    def __init__(self, untouched: str | None = None) -> None:
        self._untouched = untouched

    def _gives_way(self, rev_id: str) -> bool:
        return rev_id == (self._untouched or starter_list_revision())

    def __call__(self, conflict: Conflict) -> Resolution:
        if conflict.doc_id != LIST_DOC_ID:
            return default_resolver(conflict)
        local, remote = conflict.local, conflict.remote
        if local is None or remote is None:
            # a deleted list loses to an edited one, even to a malformed one: its earlier valid
            # revisions stay readable (read_items_or_last_valid), a deletion would end them
            return local or remote
        local_problem, remote_problem = _problem(local.body), _problem(remote.body)
        for side, problem in (("local", local_problem), ("remote", remote_problem)):
            if problem is not None:
                log.warning(
                    "conflict on %s: the %s side is malformed and counts as unchanged: %s", LIST_DOC_ID, side, problem
                )
        if local_problem is not None and remote_problem is not None:
            return default_resolver(conflict)
        # a malformed side made no change that counts, nor did the untouched starter list: the other wins whole
        local_yields, remote_yields = local_problem is not None, remote_problem is not None
        if not (local_yields or remote_yields):
            local_yields, remote_yields = self._gives_way(local.rev_id), self._gives_way(remote.rev_id)
        if local_yields != remote_yields:
            return remote if local_yields else local
        base = conflict.base if conflict.base is not None and is_valid_list(conflict.base) else None
        high, low = (local, remote) if compare_key(local.rev_id) > compare_key(remote.rev_id) else (remote, local)
        return _merge_valid(base, high.body, low.body)
