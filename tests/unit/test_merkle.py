"""The Merkle tree a writer's transaction is signed over (events/merkle.py), against the
reference test data of Certificate Transparency's implementation of RFC 6962 (the eight leaves
and the tree heads of google/certificate-transparency's merkle tree tests, which the RFC 9162
tree keeps)."""

from __future__ import annotations

import hashlib

import pytest

from events.merkle import leaf_hash, proofs, root, root_from_proof

LEAVES = [bytes.fromhex(h) for h in (
    "", "00", "10", "2021", "3031", "40414243", "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
)]
HEADS = [  # the tree head over the first 1, 2, ... 8 leaves
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
INCLUSION = [  # (leaf index, tree size, proof), from the same tests
    (0, 8, [
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ]),
    (5, 8, [
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    ]),
]
HASHED = [leaf_hash(leaf) for leaf in LEAVES]


def test_the_tree_heads_are_the_reference_ones():
    assert root([]).hex() == hashlib.sha256(b"").hexdigest()
    assert [root(HASHED[:n]).hex() for n in range(1, 9)] == HEADS


@pytest.mark.parametrize(("index", "size", "proof"), INCLUSION)
def test_the_inclusion_proofs_are_the_reference_ones_and_verify(index, size, proof):
    head, paths = proofs(HASHED[:size])

    assert head.hex() == HEADS[size - 1]
    assert [p.hex() for p in paths[index]] == proof
    reference = [bytes.fromhex(p) for p in proof]
    assert root_from_proof(HASHED[index], index, size, reference) == head


def every_tree(most: int = 40):
    leaves = [leaf_hash(b"event-%d" % i) for i in range(most)]
    for size in range(1, most + 1):
        head, paths = proofs(leaves[:size])
        yield leaves[:size], head, paths


def test_every_leafs_proof_leads_to_the_head_of_every_tree_size():
    for leaves, head, paths in every_tree():
        assert head == root(leaves)
        for index, leaf in enumerate(leaves):
            assert root_from_proof(leaf, index, len(leaves), paths[index]) == head


def test_a_proof_does_not_hold_for_another_leaf_place_or_path():
    # (Not for another size: leaf 0's path is the same in trees of 3 and 4 leaves, so the
    # writer signs the size along with the head; tests/unit/test_batch_signatures.py.)
    for leaves, head, paths in every_tree():
        size = len(leaves)
        for index, leaf in enumerate(leaves):
            path = paths[index]
            other = leaves[(index + 1) % size]
            if size > 1:
                assert root_from_proof(other, index, size, path) != head
                assert root_from_proof(leaf, (index + 1) % size, size, path) != head
            assert root_from_proof(leaf, index, size, [*path, leaf]) != head
            if path:
                assert root_from_proof(leaf, index, size, path[:-1]) != head
                flipped = bytes([path[0][0] ^ 1]) + path[0][1:]
                assert root_from_proof(leaf, index, size, [flipped, *path[1:]]) != head


def test_a_place_outside_the_tree_or_a_short_hash_is_no_proof():
    _, paths = proofs(HASHED)
    assert root_from_proof(HASHED[0], 8, 8, paths[0]) is None
    assert root_from_proof(HASHED[0], -1, 8, paths[0]) is None
    assert root_from_proof(HASHED[0], 0, 8, [paths[0][0][:31], *paths[0][1:]]) is None
    with pytest.raises(ValueError):
        proofs([])
