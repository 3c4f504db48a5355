"""RFC 6962 (Certificate Transparency) Merkle trees: roots, inclusion and consistency proofs.

Pure and standard-library only, so that an export bundle can be checked
offline with nothing of the bridge installed but this file's ideas.

`MerkleTree` stores only the hashes of perfect, aligned subtrees (level L holds
the subtrees of 2**L leaves), 32 bytes each in one bytearray per level: appending
is amortised O(1), a million leaves take 64 MB, and the root, an inclusion proof
or a consistency proof for *any* earlier size needs O(log n) further hashes.
`Frontier` is the compact range (one subtree root per set bit of the size) that
the writer keeps to sign a new root without reading the whole log.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than n (n >= 2): where RFC 6962 splits a tree."""
    return 1 << ((n - 1).bit_length() - 1)


class MerkleTree:
    def __init__(self, leaves: Iterable[bytes] = ()) -> None:
        self.levels: list[bytearray] = [bytearray()]
        self.size = 0
        # Hashes of ranges that are not perfect subtrees (the ragged right edges); a range's hash
        # never changes in an append-only tree, so they are kept for good.
        self._ragged: dict[tuple[int, int], bytes] = {}
        self.extend(leaves)

    def append(self, leaf: bytes) -> None:
        self.extend((leaf,))

    def extend(self, leaves: Iterable[bytes]) -> None:
        """Append leaf hashes; building level by level costs about one SHA-256 per leaf."""
        self.levels[0] += b"".join(leaves)
        self.size = len(self.levels[0]) // 32
        sha, level = hashlib.sha256, 0
        while len(self.levels[level]) >= 64:
            if level + 1 == len(self.levels):
                self.levels.append(bytearray())
            row, parents = self.levels[level], self.levels[level + 1]
            done, pairs = len(parents) // 32, len(row) // 64
            if done == pairs:
                break
            parents += b"".join(sha(b"\x01" + row[i * 64 : i * 64 + 64]).digest() for i in range(done, pairs))
            level += 1

    def root(self, size: int | None = None) -> bytes:
        size = self._size(size)
        return EMPTY_ROOT if size == 0 else self._range(0, size)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """The audit path of leaf `index` in the tree of the first `size` leaves (RFC 6962 2.1.1)."""
        size = self._size(size)
        if not 0 <= index < size:
            raise ValueError(f"leaf {index} is not in a tree of {size}")
        path: list[bytes] = []
        lo, hi = 0, size
        while hi - lo > 1:
            k = _split(hi - lo)
            if index < lo + k:
                path.append(self._range(lo + k, hi))
                hi = lo + k
            else:
                path.append(self._range(lo, lo + k))
                lo += k
        path.reverse()  # collected root-down; the proof reads leaf-up
        return path

    def consistency_proof(self, old: int, size: int | None = None) -> list[bytes]:
        """Proof that the tree of `old` leaves is a prefix of the tree of `size` (RFC 6962 2.1.2)."""
        size = self._size(size)
        if not 0 < old <= size:
            raise ValueError(f"no consistency proof from {old} to {size}")
        path: list[bytes] = []
        lo, hi, m, complete = 0, size, old, True
        while m != hi - lo:
            k = _split(hi - lo)
            if m <= k:
                path.append(self._range(lo + k, hi))
                hi = lo + k
            else:
                path.append(self._range(lo, lo + k))
                lo, m, complete = lo + k, m - k, False
        if not complete:
            path.append(self._range(lo, hi))
        path.reverse()
        return path

    def _size(self, size: int | None) -> int:
        if size is None:
            return self.size
        if not 0 <= size <= self.size:
            raise ValueError(f"tree has {self.size} leaves, not {size}")
        return size

    def _range(self, lo: int, hi: int) -> bytes:
        """MTH of leaves lo..hi-1, for the ranges RFC 6962's recursion visits."""
        n = hi - lo
        level = (n - 1).bit_length()
        if n == 1 << level and lo % n == 0:
            row, at = self.levels[level], (lo >> level) * 32
            return bytes(row[at : at + 32])
        known = self._ragged.get((lo, hi))
        if known is None:
            k = _split(n)
            known = self._ragged[lo, hi] = node_hash(self._range(lo, lo + k), self._range(lo + k, hi))
        return known


class Frontier:
    """The compact range of a tree: enough to append and to compute the root, nothing more."""

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        if len(hashes) != size.bit_count():
            raise ValueError(f"a frontier of {size} leaves has {size.bit_count()} hashes, not {len(hashes)}")
        self.size = size
        self.hashes = list(hashes)  # largest subtree first

    def append(self, leaf: bytes) -> None:
        self.hashes.append(leaf)
        self.size += 1
        merges = (self.size & -self.size).bit_length() - 1  # trailing zero bits: subtrees completed
        for _ in range(merges):
            right = self.hashes.pop()
            self.hashes[-1] = node_hash(self.hashes[-1], right)

    def root(self) -> bytes:
        if not self.hashes:
            return EMPTY_ROOT
        root = self.hashes[-1]
        for left in reversed(self.hashes[:-1]):
            root = node_hash(left, root)
        return root


def root_from_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes | None:
    """The root an inclusion proof leads to (RFC 9162 2.1.3.2), or None if it cannot be a proof."""
    if not 0 <= index < size:
        return None
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return r if sn == 0 else None


def verify_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes) -> bool:
    return root_from_inclusion(index, size, leaf, proof) == root


def verify_consistency(old: int, size: int, old_root: bytes, root: bytes, proof: Sequence[bytes]) -> bool:
    """RFC 9162 2.1.4.2: does the tree of `size` leaves extend the tree of `old` leaves?"""
    if old == size:
        return not proof and old_root == root
    if not 0 < old < size or not proof:
        return False
    path = list(proof)
    if old & (old - 1) == 0:  # a power of two: the old root is itself a node of the new tree
        path.insert(0, old_root)
    fn, sn = old - 1, size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == old_root and sr == root
