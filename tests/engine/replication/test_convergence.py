"""Three peers edit one list and sync in any order through real listeners and replicators: they converge.

Property (hypothesis): whatever the edits and the order of one-shot push-and-pull
replications between three peers, once they have synced in a ring the two peers
that check the list's schema hold the same revision, no conflict, every item, and
the last value of every item only one of them edited. The third peer never checks
the schema and may save a malformed list at any point; its bad revision must never
replace or merge into theirs, nor cost them an item.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context

from engine.database import Database
from engine.errors import InventoryError
from engine.inventory import LIST_DOC_ID, read_items, set_quantity, validate_list_revision
from engine.inventory_merge import ItemMergeResolver
from engine.replication.auth import BasicAuthenticator
from engine.replication.listener import ListenerConfiguration, URLEndpointListener
from engine.replication.replicator import Replicator
from engine.replication.replicator_types import ReplicatorConfiguration
from engine.userdata import open_database
from tests.conftest import TIME_UNIT
from tests.engine.replication.conftest import password_authenticator

KEYS = [f"item-{i}" for i in range(5)]
MALFORMED = [
    {"items": [{"value": 1}, {"key": "Eggs", "value": "many"}]},
    {"items": "notalist"},
    {"type": "list", "items": [{"key": "item-0", "value": -1}]},
    {"type": "list", "items": [{"key": "item-0", "value": 1}, {"key": "item-0", "value": 2}]},
]
#: Peers 0 and 1 check the schema (as the app opens databases); peer 2 does not.
FOREIGN = 2
edits = st.tuples(st.just("edit"), st.integers(0, 2), st.integers(0, len(KEYS) - 1), st.integers(0, 99))
syncs = st.tuples(st.just("sync"), st.integers(0, 2), st.integers(0, 2), st.just(0))
corruptions = st.tuples(st.just("corrupt"), st.just(FOREIGN), st.integers(0, len(MALFORMED) - 1), st.just(0))
steps = st.lists(st.one_of(edits, edits, syncs, syncs, corruptions), max_size=14)  # corruptions a step in five


class Group:
    """Three databases, each served by a listener on 127.0.0.1."""

    def __init__(self, root: Path, depth: int | None = None) -> None:
        if depth is None:  # as the app opens them
            self.databases = [
                open_database(root / "a"),
                open_database(root / "b"),
                Database(root / "foreign", durable=False, keep_bodies=20),
            ]
        else:  # trees pruned after ``depth`` edits, so that histories often fail to meet
            shallow = {"max_depth": depth, "keep_bodies": depth}
            self.databases = [
                Database(root / "a", validator=validate_list_revision, **shallow),
                Database(root / "b", validator=validate_list_revision, **shallow),
                Database(root / "foreign", durable=False, **shallow),
            ]
        self.listeners: list[URLEndpointListener] = []

    async def start(self) -> None:
        for db in self.databases:
            auth = password_authenticator()
            listener = URLEndpointListener(ListenerConfiguration(db, host="127.0.0.1", authenticator=auth))
            await listener.start()
            self.listeners.append(listener)

    async def sync(self, active: int, passive: int) -> None:
        """A one-shot push-and-pull by ``active`` with ``passive``'s listener; documents may fail, it may not."""
        config = ReplicatorConfiguration(
            self.databases[active],
            self.listeners[passive].urls[0],
            authenticator=BasicAuthenticator("bob", "secret"),
            conflict_resolver=ItemMergeResolver(),
            max_attempts=1,
        )
        replicator = Replicator(config)
        replicator.start()
        status = await asyncio.wait_for(replicator.wait_stopped(), 30 * TIME_UNIT)
        assert status.error is None, status.error

    async def close(self) -> None:
        for listener in self.listeners:
            await listener.stop()
        for db in self.databases:
            db.close()


async def play(root: Path, plan: list[tuple[str, int, int, int]], depth: int | None = None) -> None:
    group = Group(root, depth)
    await group.start()
    try:
        a, b, foreign = group.databases
        a.save(LIST_DOC_ID, {"type": "list", "items": [{"key": key, "value": 0} for key in KEYS]})
        await group.sync(1, 0)
        await group.sync(FOREIGN, 0)
        last_edit: dict[str, int] = {}
        editors: dict[str, set[int]] = {}
        corrupted = False
        for action, x, y, value in plan:
            if action == "edit":
                try:
                    set_quantity(group.databases[x], KEYS[y], value)
                except InventoryError:  # the foreign peer's own list is damaged: it cannot edit it
                    assert x == FOREIGN and corrupted
                    continue
                last_edit[KEYS[y]] = value
                editors.setdefault(KEYS[y], set()).add(x)
            elif action == "corrupt":
                foreign.save(LIST_DOC_ID, MALFORMED[y])
                corrupted = True
            elif x != y:
                await group.sync(x, y)
        if currently_in_test_context():  # the examples below replay a plan outside hypothesis
            event("a malformed list was saved" if corrupted else "no malformed list")
        for _ in range(2):  # let everything settle: a ring of syncs, twice over
            for x, y in ((0, 1), (1, FOREIGN), (FOREIGN, 0)):
                await group.sync(x, y)
        await group.sync(0, 1)
        docs = [db.get(LIST_DOC_ID) for db in (a, b)]
        assert docs[0] is not None and docs[1] is not None
        assert docs[0].rev_id == docs[1].rev_id, "the peers that check the schema did not converge"
        assert not docs[0].conflicted and not docs[1].conflicted
        final = {item.key: item.value for item in read_items(a)}  # raises if a's list were damaged
        assert set(final) == set(KEYS), "a valid item was lost"
        for key, value in last_edit.items():
            if len(editors[key]) == 1 and FOREIGN not in editors[key]:
                assert final[key] == value, f"the only edit of {key} was lost"
    finally:
        await group.close()


@pytest.mark.slow
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps)
def test_three_peers_converge_through_real_replication(
    tmp_path_factory: pytest.TempPathFactory, plan: list[tuple[str, int, int, int]]
) -> None:
    asyncio.run(play(tmp_path_factory.mktemp("peers"), plan))


@pytest.mark.slow
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps, st.integers(1, 3))
def test_three_peers_converge_when_their_trees_are_pruned_between_syncs(
    tmp_path_factory: pytest.TempPathFactory, plan: list[tuple[str, int, int, int]], depth: int
) -> None:
    """The same with trees pruned to 1-3 revisions: what each remote holds stays in the tree (the
    common ancestor of the next merge with it), histories reach it (§4.2), and a revision made by a
    peer that held ours replaces ours."""
    asyncio.run(play(tmp_path_factory.mktemp("peers"), plan, depth))


def test_a_line_cut_by_pruning_is_whole_again_once_a_peer_brings_the_parent_back(tmp_path: Path) -> None:
    # found by the property above (trees of one revision): A's edit is a root once pruned; B,
    # passive, holds its parent; A pulls that parent from B and, resolving, makes the very same
    # revision again (same parent, same body): it is linked to the parent, so the push reaches B
    plan = [("edit", 0, 0, 0), ("sync", 2, 0, 0), ("corrupt", 2, 0, 0)]
    asyncio.run(play(tmp_path, plan, depth=1))


@pytest.mark.xfail(
    strict=True,
    reason="known gap (docs/notes.md): a passive peer holding the pre-merge revision refuses the merge as a "
    "conflict, and the third peer's only copy of the merge sits under a malformed revision",
)
def test_a_merge_reaches_a_passive_peer_that_holds_the_revision_it_closed(tmp_path: Path) -> None:
    # found by the property above: A and the foreign peer edit the same item, B takes A's edit, A
    # merges the foreign edit (closing its own branch), the foreign peer saves a malformed list;
    # A, active, pushes the merge to B, passive: B's revision is on the branch A closed, so B
    # answers 409, and B, pulling from the foreign peer, refuses the malformed revision on top of it
    plan = [("edit", 0, 0, 0), ("edit", 2, 0, 1), ("sync", 0, 1, 0), ("sync", 0, 2, 0), ("corrupt", 2, 0, 0)]
    asyncio.run(play(tmp_path, plan))
