"""RFC 6962 Merkle trees against the Certificate Transparency reference vectors."""

from __future__ import annotations

import hashlib
import random

import pytest

from bridge.archive.merkle import (
    EMPTY_ROOT,
    Frontier,
    MerkleTree,
    leaf_hash,
    node_hash,
    root_from_inclusion,
    verify_consistency,
    verify_inclusion,
)

# The inputs and tree heads of CT's merkle_tree_test (also used by Trillian and RFC 9162 implementations).
INPUTS = ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"]
ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
# (leaf index, tree size, audit path)
INCLUSION = [
    (
        0,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        1,
        5,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (0, 1, []),
]
# (old size, new size, proof)
CONSISTENCY = [
    (1, 1, []),
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]
LEAVES = [leaf_hash(bytes.fromhex(x)) for x in INPUTS]
TREE = MerkleTree(LEAVES)


def _hex(hashes: list[bytes]) -> list[str]:
    return [h.hex() for h in hashes]


def _reference_root(leaves: list[bytes]) -> bytes:
    """RFC 6962's recursive definition, word for word."""
    if not leaves:
        return EMPTY_ROOT
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return node_hash(_reference_root(leaves[:k]), _reference_root(leaves[k:]))


def test_roots_match_the_reference_for_every_size() -> None:
    frontier = Frontier()
    assert frontier.root().hex() == ROOTS[0]
    for n in range(9):
        assert TREE.root(n).hex() == ROOTS[n]
        assert MerkleTree(LEAVES[:n]).root().hex() == ROOTS[n]
    for n, leaf in enumerate(LEAVES, 1):
        frontier.append(leaf)
        assert frontier.root().hex() == ROOTS[n]
    assert hashlib.sha256(b"").digest() == EMPTY_ROOT


@pytest.mark.parametrize(("index", "size", "path"), INCLUSION)
def test_inclusion_proofs_match_the_reference(index: int, size: int, path: list[str]) -> None:
    proof = TREE.inclusion_proof(index, size)
    assert _hex(proof) == path
    root = bytes.fromhex(ROOTS[size])
    assert verify_inclusion(index, size, LEAVES[index], proof, root)
    assert not verify_inclusion(index, size, LEAVES[index], proof, bytes.fromhex(ROOTS[0]))
    assert not verify_inclusion(index, size, LEAVES[(index + 1) % 8], proof, root)
    assert not verify_inclusion(index + size, size, LEAVES[index], proof, root)


@pytest.mark.parametrize(("old", "size", "path"), CONSISTENCY)
def test_consistency_proofs_match_the_reference(old: int, size: int, path: list[str]) -> None:
    proof = TREE.consistency_proof(old, size)
    assert _hex(proof) == path
    old_root, root = bytes.fromhex(ROOTS[old]), bytes.fromhex(ROOTS[size])
    assert verify_consistency(old, size, old_root, root, proof)
    assert not verify_consistency(old, size, bytes.fromhex(ROOTS[old + 1]), root, proof)


def test_every_proof_of_random_trees_verifies_and_nothing_else_does() -> None:
    rng = random.Random(6962)
    leaves = [leaf_hash(rng.randbytes(rng.randint(0, 9))) for _ in range(70)]
    tree = MerkleTree(leaves)
    roots = [_reference_root(leaves[:n]) for n in range(71)]
    for size in range(1, 71):
        assert tree.root(size) == roots[size]
        for index in range(size):
            proof = tree.inclusion_proof(index, size)
            assert root_from_inclusion(index, size, leaves[index], proof) == roots[size]
            forged = [*proof[:-1], bytes(32)] if proof else [bytes(32)]
            assert root_from_inclusion(index, size, leaves[index], forged) != roots[size]
        for old in range(1, size + 1):
            proof = tree.consistency_proof(old, size)
            assert verify_consistency(old, size, roots[old], roots[size], proof)
            if old < size:
                assert not verify_consistency(old, size, roots[old - 1] or EMPTY_ROOT, roots[size], proof)


def test_frontier_resumes_from_a_stored_state() -> None:
    full = Frontier()
    for leaf in LEAVES[:6]:
        full.append(leaf)
    resumed = Frontier(6, full.hashes)
    for leaf in LEAVES[6:]:
        resumed.append(leaf)
    assert resumed.root().hex() == ROOTS[8]
    with pytest.raises(ValueError, match="has 2 hashes"):
        Frontier(5, [LEAVES[0]])


def test_bad_sizes_are_refused() -> None:
    with pytest.raises(ValueError):
        TREE.root(9)
    with pytest.raises(ValueError):
        TREE.inclusion_proof(3, 3)
    with pytest.raises(ValueError):
        TREE.consistency_proof(0, 3)
    assert not verify_consistency(3, 2, bytes(32), bytes(32), [bytes(32)])


def test_leaf_hashes_use_the_codec_canonical_bytes() -> None:
    from bridge.archive.hashing import leaf_hash as record_leaf
    from bridge.codec import canonical

    record = {"seq": 1, "text": "Déjà vu ☃", "n": None, "flags": "[]", "z": 1.5, "leaf_hash": "x"}
    expected = hashlib.sha256(b"\x00" + canonical({k: v for k, v in record.items() if k != "leaf_hash"}))
    assert record_leaf(record) == expected.hexdigest()
