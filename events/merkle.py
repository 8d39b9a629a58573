"""Merkle tree hashes and inclusion proofs, as Certificate Transparency defines them.

RFC 9162 (section 2.1, which keeps RFC 6962's tree): a leaf's hash is SHA-256 of 0x00 and the
leaf; an inner node's is SHA-256 of 0x01 and its two children; a tree of n > 1 leaves splits at
k, the largest power of two below n. The inclusion proof of leaf m is the list of sibling
hashes from the leaf up to the root; the verifier recomputes the root from the leaf, m, n and
the proof (section 2.1.3.2). A writer signs one root for all the records of a transaction, and
each record carries its own proof (events/signing.py, decision 70).

Pure: no I/O.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

MAX_LEAVES = 1 << 16
"""The most leaves a tree may have."""
MAX_PATH = MAX_LEAVES.bit_length() - 1
"""The most hashes a proof in such a tree has: 16."""


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def root(leaves: Sequence[bytes]) -> bytes:
    """The tree head over ``leaves`` (leaf hashes, in order); SHA-256 of nothing when empty."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = _split(len(leaves))
    return node_hash(root(leaves[:k]), root(leaves[k:]))


def proofs(leaves: Sequence[bytes]) -> tuple[bytes, list[list[bytes]]]:
    """The tree head over ``leaves`` and every leaf's inclusion proof, in one walk of the tree
    (each subtree hashed once, not once per leaf)."""
    if not leaves:
        raise ValueError("a tree of no leaves proves nothing")
    paths: list[list[bytes]] = [[] for _ in leaves]

    def walk(start: int, end: int) -> bytes:
        if end - start == 1:
            return leaves[start]
        k = _split(end - start)
        left, right = walk(start, start + k), walk(start + k, end)
        for i in range(start, start + k):
            paths[i].append(right)
        for i in range(start + k, end):
            paths[i].append(left)
        return node_hash(left, right)

    return walk(0, len(leaves)), paths


def root_from_proof(leaf: bytes, index: int, size: int, proof: Sequence[bytes]) -> bytes | None:
    """The tree head that ``proof`` leads to from ``leaf`` at ``index`` of a tree of ``size``
    leaves, or None when the proof cannot be one (RFC 9162, section 2.1.3.2)."""
    if not 0 <= index < size or any(len(p) != 32 for p in proof):
        return None
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return r if sn == 0 else None
