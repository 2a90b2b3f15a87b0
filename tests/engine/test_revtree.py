from __future__ import annotations

import hashlib
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import InvalidDocumentError
from engine.revid import is_valid_rev_id
from engine.revtree import HISTORY_REACH, InsertStatus, RevNode, RevTree, wire_history


def rid(gen: int, tag: str) -> str:
    return f"{gen}-{hashlib.sha1(tag.encode()).hexdigest()}"


def chain(*tags: str) -> list[str]:
    """Revision IDs of a linear history, oldest first."""
    return [rid(i + 1, t) for i, t in enumerate(tags)]


def test_linear_history_winner_and_history() -> None:
    r1, r2, r3 = chain("a", "b", "c")
    tree = RevTree()
    tree.add_child(None, r1, deleted=False, sequence=1)
    tree.add_child(r1, r2, deleted=False, sequence=2)
    tree.add_child(r2, r3, deleted=False, sequence=3)
    assert tree.winner().rev_id == r3
    assert tree.history(r3) == [r3, r2, r1]
    assert not tree.is_conflicted()
    assert tree.is_ancestor(r1, r3)
    assert not tree.is_ancestor(r3, r1)


def test_add_child_rejects_bad_structure() -> None:
    r1, r2 = chain("a", "b")
    tree = RevTree()
    tree.add_child(None, r1, deleted=False, sequence=1)
    with pytest.raises(InvalidDocumentError):
        tree.add_child(None, r1, deleted=False, sequence=2)  # exists
    with pytest.raises(InvalidDocumentError):
        tree.add_child(r2, rid(3, "x"), deleted=False, sequence=2)  # unknown parent
    with pytest.raises(InvalidDocumentError):
        tree.add_child(r1, rid(3, "x"), deleted=False, sequence=2)  # generation gap
    with pytest.raises(InvalidDocumentError):
        tree.add_child(None, rid(2, "x"), deleted=False, sequence=2)  # orphan in a non-empty tree


def test_winner_rule_live_beats_deleted_then_generation_then_digest() -> None:
    r1 = rid(1, "root")
    tree = RevTree()
    tree.add_child(None, r1, deleted=False, sequence=1)
    low, high = sorted([rid(2, "x"), rid(2, "y")], key=lambda r: r.split("-")[1])
    tree.add_child(r1, low, deleted=False, sequence=2)
    tree.add_child(r1, high, deleted=False, sequence=3)
    assert tree.winner().rev_id == high
    assert tree.is_conflicted()
    deep = rid(3, "deep")
    tree.add_child(low, deep, deleted=False, sequence=4)
    assert tree.winner().rev_id == deep  # higher generation
    tomb = rid(4, "tomb")
    tree.add_child(deep, tomb, deleted=True, sequence=5)
    assert tree.winner().rev_id == high  # a live leaf beats a deleted one
    assert not tree.is_conflicted()
    tomb2 = rid(3, "tomb2")
    tree.add_child(high, tomb2, deleted=True, sequence=6)
    assert tree.winner().rev_id == tomb  # all deleted: highest generation
    assert tree.live_leaves() == []


def test_insert_with_history_creates_placeholders() -> None:
    r1, r2, r3 = chain("a", "b", "c")
    tree = RevTree()
    assert tree.insert_with_history(r3, [r2, r1], deleted=False, sequence=1) is InsertStatus.ADDED
    assert tree.get(r1) == RevNode(r1, None, False, False, 1)
    assert tree.get(r2) == RevNode(r2, r1, False, False, 1)
    assert tree.insert_with_history(r3, [r2, r1], deleted=False, sequence=2) is InsertStatus.EXISTS
    assert tree.insert_with_history(r2, [r1], deleted=False, sequence=3) is InsertStatus.FILLED
    node = tree.get(r2)
    assert node is not None and node.has_body and node.sequence == 3


def test_insert_rejects_generation_gaps_and_bad_ids() -> None:
    tree = RevTree()
    with pytest.raises(InvalidDocumentError):
        tree.insert_with_history(rid(3, "c"), [rid(1, "a")], deleted=False, sequence=1)
    with pytest.raises(InvalidDocumentError):
        tree.insert_with_history("2-xyz", ["1-ab"], deleted=False, sequence=1)
    with pytest.raises(InvalidDocumentError):  # IDs the caller validated: generations are still checked
        tree.insert_with_history(rid(3, "c"), [rid(1, "a")], deleted=False, sequence=1, ids_checked=True)
    assert len(tree) == 0


def test_prune_keeps_max_depth_below_each_leaf() -> None:
    revs = chain(*"abcdefghij")
    tree = RevTree()
    tree.insert_with_history(revs[-1], list(reversed(revs[:-1])), deleted=False, sequence=1)
    removed = tree.prune(4)
    assert sorted(removed) == sorted(revs[:6])
    assert tree.history(revs[-1]) == list(reversed(revs[6:]))
    oldest = tree.get(revs[6])
    assert oldest is not None and oldest.parent is None


def test_prune_keeps_short_branches_of_old_ancestors() -> None:
    revs = chain(*"abcdef")
    tree = RevTree()
    tree.insert_with_history(revs[-1], list(reversed(revs[:-1])), deleted=False, sequence=1)
    branch = rid(2, "branch")
    tree.insert_with_history(branch, [revs[0]], deleted=False, sequence=2)
    tree.prune(3)
    assert revs[0] in tree and branch in tree  # within 3 of the branch leaf
    assert revs[1] not in tree


def test_prune_keeps_a_remote_revision_and_links_across_the_pruned_generations() -> None:
    revs = chain(*"abcdefghijklmnop")  # 16 generations
    tree = RevTree()
    tree.insert_with_history(revs[-1], list(reversed(revs[:-1])), deleted=False, sequence=1)
    held = revs[3]  # generation 4: what a peer was last known to hold
    removed = tree.prune(5, keep={held, rid(9, "not-in-the-tree")})
    assert held not in removed and held in tree
    assert sorted(removed) == sorted(revs[:3] + revs[4:11])
    assert tree.history(revs[-1]) == [*reversed(revs[11:]), held]  # the kept oldest links to it
    kept_root = tree.get(held)
    assert kept_root is not None and kept_root.parent is None
    assert RevTree.decode(tree.encode()).history(revs[-1]) == tree.history(revs[-1])


def test_prune_keeping_a_revision_within_the_depth_changes_nothing() -> None:
    revs = chain(*"abcdefghij")
    trees = [RevTree(), RevTree()]
    for tree in trees:
        tree.insert_with_history(revs[-1], list(reversed(revs[:-1])), deleted=False, sequence=1)
    assert sorted(trees[0].prune(6, keep={revs[7]})) == sorted(trees[1].prune(6)) == sorted(revs[:4])
    assert trees[0].shape() == trees[1].shape()


def test_wire_history_goes_back_to_what_the_peer_holds() -> None:
    revs = chain(*"abcdefghij")  # generations 1-10
    ancestors = list(reversed(revs[:-1]))
    assert wire_history(revs[-1], ancestors, {revs[5]}, 20) == ancestors[:4]  # down to generation 6
    assert wire_history(revs[-1], ancestors, set(), 3) == ancestors[:3]
    assert wire_history(revs[-1], ancestors, {rid(3, "unknown")}, 3) == ancestors[:3]
    # the revision the peer holds is reached even past max_history
    assert wire_history(revs[-1], ancestors, {revs[1]}, 3) == ancestors[:8]
    # every real ancestor on the way goes, past HISTORY_REACH too: only made-up ones are capped
    # (a receiver that keeps deeper trees accepts a gap only at its own pruning depth)
    long = chain(*(f"r{i}" for i in range(1, 131)))  # generations 1-130
    ancestors = list(reversed(long[:-1]))
    assert wire_history(long[-1], ancestors, {long[0]}, 20) == ancestors


def test_wire_history_fills_skipped_generations_then_leaves_a_deep_gap() -> None:
    leaf, near, far = rid(12, "leaf"), rid(11, "near"), rid(4, "far")
    filled = wire_history(leaf, [near, far], {far}, 20)
    assert filled[0] == near and filled[-1] == far and len(filled) == 1 + 6 + 1
    fillers = filled[1:-1]
    assert [int(f.partition("-")[0]) for f in fillers] == [10, 9, 8, 7, 6, 5]
    assert all(f.partition("-")[2].startswith("faded000") and len(f.partition("-")[2]) == 24 for f in fillers)
    assert all(is_valid_rev_id(f) for f in fillers)
    assert wire_history(leaf, [near, far], {far}, 20) == filled  # derived, not random
    other = wire_history(rid(12, "other-leaf"), [rid(11, "other"), far], {far}, 20)
    assert not set(other[1:-1]) & set(fillers)  # another branch above the same revision
    assert wire_history(leaf, [], set(), 20) == []
    top, below = rid(300, "top"), rid(299, "below")
    deep = wire_history(top, [below, far], {far}, 20)  # 294 generations skipped
    assert len(deep) == HISTORY_REACH and deep[0] == below and deep[-1] == far
    assert int(deep[-2].partition("-")[0]) == 299 - (HISTORY_REACH - 2)  # then the gap
    tree = RevTree()
    tree.insert_with_history(far, [], deleted=False, sequence=1)
    tree.insert_with_history(top, deep, deleted=False, sequence=2)  # accepted: the gap is deep enough
    assert tree.is_ancestor(far, top)


def test_graft_links_a_line_cut_by_pruning_to_the_revision_it_goes_on_from() -> None:
    ours = chain(*"abc")  # generations 1-3: the peer held 3-c
    theirs = [rid(g, f"t{g}") for g in range(10, 31)]  # what arrived: generations 10-30, cut by pruning
    tree = RevTree()
    tree.insert_with_history(ours[-1], list(reversed(ours[:-1])), deleted=False, sequence=1)
    tree.insert_with_history(theirs[-1], list(reversed(theirs[:-1])), deleted=False, sequence=2)
    assert tree.common_ancestor(theirs[-1], ours[-1]) is None and tree.is_conflicted()
    assert not tree.graft(theirs[-1], rid(2, "unknown"))  # not in the tree
    assert tree.graft(theirs[-1], ours[-1])
    assert not tree.is_conflicted() and tree.winner().rev_id == theirs[-1]
    assert tree.is_ancestor(ours[-1], theirs[-1]) and tree.common_ancestor(theirs[-1], ours[-1]) == ours[-1]
    history = wire_history(theirs[-1], tree.history(theirs[-1])[1:], {ours[-1]}, 20)
    assert history[-1] == ours[-1] and len(history) == 20 + 6 + 1  # gap of generations 4-9 filled
    assert not tree.graft(theirs[-1], ours[0])  # already on the line
    low = RevTree()  # a line whose root is not younger cannot go on from it
    low.insert_with_history(ours[-1], [], deleted=False, sequence=1)
    low.insert_with_history(rid(5, "x"), [rid(4, "y"), rid(3, "z")], deleted=False, sequence=2)
    assert not low.graft(rid(5, "x"), ours[-1]) and low.common_ancestor(rid(5, "x"), ours[-1]) is None


@pytest.mark.parametrize("max_depth", [20, 5])
def test_insert_accepts_a_history_that_skips_generations_only_at_the_pruning_depth(max_depth: int) -> None:
    revs = chain(*"abcdefghijklmnopqrstuvwxyz")  # generations 1-26
    leaf, gapped = revs[-1], [*reversed(revs[26 - max_depth : 25]), revs[2]]  # generation 3 last
    tree = RevTree()
    tree.insert_with_history(revs[2], list(reversed(revs[:2])), deleted=False, sequence=1)
    tree.insert_with_history(leaf, gapped, deleted=False, sequence=2, max_depth=max_depth)
    assert tree.winner().rev_id == leaf and not tree.is_conflicted() and tree.is_ancestor(revs[2], leaf)
    shallow = [revs[24], revs[22]]  # a gap at the second entry
    with pytest.raises(InvalidDocumentError):
        RevTree().insert_with_history(leaf, shallow, deleted=False, sequence=1, max_depth=max_depth)
    with pytest.raises(InvalidDocumentError):  # generations must still go down
        RevTree().insert_with_history(leaf, [*gapped[:-1], rid(23, "up")], deleted=False, sequence=1)


def test_insert_checks_a_history_only_as_far_as_the_first_revision_it_holds() -> None:
    # as LiteCore's RevTree::findCommonAncestor, which stops there: a gap past it is no error at
    # any depth; generations must still go down (a line linked upwards would loop)
    revs = chain(*"abcdefghijklmnopqrstuvwxyz")
    tree = RevTree()
    tree.insert_with_history(revs[9], list(reversed(revs[:9])), deleted=False, sequence=1)  # generations 1-10
    history = [*reversed(revs[9:25]), revs[2]]  # 25 down to 10 (held, at index 16), then 3 after a gap
    tree.insert_with_history(revs[-1], history, deleted=False, sequence=2)
    assert tree.winner().rev_id == revs[-1] and tree.is_ancestor(revs[9], revs[-1]) and not tree.is_conflicted()
    with pytest.raises(InvalidDocumentError):  # the same gap with nothing held before it
        RevTree().insert_with_history(revs[-1], history, deleted=False, sequence=1)
    up = [revs[11], revs[10], revs[9], rid(12, "up")]
    with pytest.raises(InvalidDocumentError):
        tree.insert_with_history(rid(13, "x"), up, deleted=False, sequence=3)


def test_a_pruned_history_reaches_the_peer_revision_it_was_pruned_down_to() -> None:
    revs = chain(*"abcdefghijklmnopqrstuvwxyz")
    ours = RevTree()
    ours.insert_with_history(revs[-1], list(reversed(revs[:-1])), deleted=False, sequence=1)
    theirs = RevTree()  # a peer that got generation 3 and nothing since
    theirs.insert_with_history(revs[2], list(reversed(revs[:2])), deleted=False, sequence=1)
    ours.prune(20, keep={revs[2]})
    assert revs[3] not in ours
    history = wire_history(revs[-1], ours.history(revs[-1])[1:], {revs[2]}, 20)
    assert len(history) == 23 and history[-1] == revs[2]  # the pruned generations filled in
    theirs.insert_with_history(revs[-1], history, deleted=False, sequence=2)
    assert theirs.winner().rev_id == revs[-1] and not theirs.is_conflicted()
    assert theirs.is_ancestor(revs[2], revs[-1])


def test_adopt_links_a_pruned_root_to_its_parent_again() -> None:
    r1, r2, r3 = chain("a", "b", "c")
    tree = RevTree()
    tree.insert_with_history(r3, [r2, r1], deleted=False, sequence=1)
    tree.prune(1)
    tree.insert_with_history(r2, [], deleted=False, sequence=2)  # the parent comes back, as a root
    assert {n.rev_id for n in tree.leaves()} == {r2, r3}
    tree.adopt(r1, r3)  # not its parent's generation: nothing
    tree.adopt(r2, r3)
    assert tree.history(r3) == [r3, r2] and [n.rev_id for n in tree.leaves()] == [r3]
    tree.adopt(r2, r3)  # already linked: nothing
    assert tree.history(r3) == [r3, r2]


def test_drop_bodies_keeps_leaves_and_parents() -> None:
    r1, r2, r3 = chain("a", "b", "c")
    tree = RevTree()
    for parent, rev in ((None, r1), (r1, r2), (r2, r3)):
        tree.add_child(parent, rev, deleted=False, sequence=1)
    assert tree.drop_bodies(1) == [r1]
    assert [n.rev_id for n in tree.nodes.values() if n.has_body] == [r2, r3]
    assert tree.drop_bodies(0) == [r2]
    tree.restore_bodies([r1])  # what a remote holds keeps its body after all
    assert [n.rev_id for n in tree.nodes.values() if n.has_body] == [r1, r3]
    assert tree.drop_bodies(0) == [r1]


def test_encode_decode_round_trip() -> None:
    r1, r2 = chain("a", "b")
    tree = RevTree()
    tree.insert_with_history(r2, [r1], deleted=True, sequence=7)
    tree.insert_with_history(rid(2, "other"), [r1], deleted=False, sequence=8)
    copy = RevTree.decode(tree.encode())
    assert copy.shape() == tree.shape()
    assert {n.rev_id: n.sequence for n in copy.nodes.values()} == {n.rev_id: n.sequence for n in tree.nodes.values()}


# -- properties ------------------------------------------------------------------


@st.composite
def revision_sets(draw: st.DrawFn) -> list[tuple[str, list[str], bool]]:
    """A random revision forest, as (rev, history, deleted) inserts with random history lengths."""
    n = draw(st.integers(min_value=1, max_value=25))
    nodes: list[tuple[str, str | None]] = []
    for i in range(n):
        parent = draw(st.one_of(st.none(), st.integers(0, i - 1))) if i else None
        if i and parent is None and draw(st.booleans()):
            parent = i - 1
        parent_id = nodes[parent][0] if parent is not None else None
        gen = 1 if parent_id is None else int(parent_id.split("-")[0]) + 1
        nodes.append((rid(gen, f"n{i}"), parent_id))
    parents = dict(nodes)
    inserts = []
    for rev, _ in nodes:
        history = []
        node = parents[rev]
        while node is not None:
            history.append(node)
            node = parents[node]
        keep = draw(st.integers(min_value=min(1, len(history)), max_value=len(history)))
        inserts.append((rev, history[:keep], draw(st.booleans())))
    return inserts


@settings(max_examples=200, deadline=None)
@given(revision_sets(), st.randoms(use_true_random=False))
def test_any_insertion_order_gives_the_same_tree_and_winner(
    inserts: list[tuple[str, list[str], bool]], rnd: random.Random
) -> None:
    def build(order: list[tuple[str, list[str], bool]]) -> RevTree:
        tree = RevTree()
        for seq, (rev, history, deleted) in enumerate(order, start=1):
            tree.insert_with_history(rev, history, deleted=deleted, sequence=seq)
        return tree

    reference = build(inserts)
    shuffled = list(inserts)
    rnd.shuffle(shuffled)
    other = build(shuffled)
    assert other.shape() == reference.shape()
    assert other.winner().rev_id == reference.winner().rev_id
    assert other.is_conflicted() == reference.is_conflicted()
    assert RevTree.decode(other.encode()).shape() == other.shape()


@settings(max_examples=100, deadline=None)
@given(revision_sets(), st.integers(min_value=1, max_value=6))
def test_prune_never_removes_a_leaf_or_changes_the_winner(
    inserts: list[tuple[str, list[str], bool]], depth: int
) -> None:
    tree = RevTree()
    for seq, (rev, history, deleted) in enumerate(inserts, start=1):
        tree.insert_with_history(rev, history, deleted=deleted, sequence=seq)
    leaves = {n.rev_id for n in tree.leaves()}
    winner = tree.winner().rev_id
    tree.prune(depth)
    assert {n.rev_id for n in tree.leaves()} == leaves
    assert tree.winner().rev_id == winner
    near_a_leaf = set()
    for leaf in leaves:
        near_a_leaf.update(tree.history(leaf)[:depth])
    assert set(tree.nodes) == near_a_leaf


def _fresh_leaves(tree: RevTree) -> list[str]:
    """The leaves as a tree built from scratch sees them (no remembered answer)."""
    return [n.rev_id for n in RevTree.decode(tree.encode()).leaves()]


@settings(max_examples=100, deadline=None)
@given(revision_sets(), st.randoms(use_true_random=False))
def test_leaves_stay_right_through_every_kind_of_change(
    inserts: list[tuple[str, list[str], bool]], rnd: random.Random
) -> None:
    tree = RevTree()
    for seq, (rev, history, deleted) in enumerate(inserts, start=1):
        tree.insert_with_history(rev, history, deleted=deleted, sequence=seq)
        assert [n.rev_id for n in tree.leaves()] == _fresh_leaves(tree)
        leaf = rnd.choice(tree.leaves())
        action = rnd.randrange(3)
        if action == 0:  # a local child, possibly a closing tombstone
            child = rid(leaf.generation + 1, f"child{seq}")
            tree.add_child(leaf.rev_id, child, deleted=rnd.random() < 0.5, sequence=seq, closed=rnd.random() < 0.3)
            if rnd.random() < 0.5 and leaf.parent is not None:
                tree.reopen(leaf.rev_id)
        elif action == 1:
            tree.prune(rnd.randint(1, 4))
        else:
            tree.drop_bodies(rnd.randint(0, 2))
        assert [n.rev_id for n in tree.leaves()] == _fresh_leaves(tree)
        assert tree.winner().rev_id == _fresh_leaves(tree)[0]
