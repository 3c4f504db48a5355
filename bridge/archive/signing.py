"""Signed checkpoints: an Ed25519 signature over (tree size, root, time) of the archive's log.

Standard library and `cryptography` only: the offline bundle verifier uses this too.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from bridge.archive import private
from bridge.codec import canonical

# Names what the signature is about, so it cannot be replayed as a signature over anything else.
ORIGIN = "switchboard-archive/checkpoint/v1"
MANIFEST_ORIGIN = b"switchboard-archive/export-manifest/v1\n"


@dataclass(frozen=True)
class Checkpoint:
    tree_size: int
    root: str  # hex
    signed_at: str  # bridge.codec.timestamp form
    public_key: str  # hex of the raw 32-byte Ed25519 key
    signature: str  # hex

    def message(self) -> bytes:
        return checkpoint_message(self.tree_size, self.root, self.signed_at)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Checkpoint:
        return cls(
            int(data["tree_size"]),
            str(data["root"]),
            str(data["signed_at"]),
            str(data["public_key"]),
            str(data["signature"]),
        )

    def signature_valid(self) -> bool:
        return verify_signature(self.public_key, self.message(), self.signature)


def checkpoint_message(tree_size: int, root: str, signed_at: str) -> bytes:
    return canonical({"origin": ORIGIN, "tree_size": tree_size, "root": root, "signed_at": signed_at})


def verify_signature(public_key_hex: str, message: bytes, signature_hex: str) -> bool:
    try:
        key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_key_hex))
        key.verify(bytes.fromhex(signature_hex), message)
    except (ValueError, InvalidSignature):
        return False
    return True


class Signer:
    def __init__(self, key: Ed25519PrivateKey) -> None:
        self.key = key
        raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.public_key = raw.hex()

    @classmethod
    def load(cls, path: Path) -> Signer:
        """The key `switchboard archive keygen` wrote; ValueError names what is wrong with it."""
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except OSError as exc:
            raise ValueError(f"cannot read signing key {path}: {exc.strerror}") from None
        except (ValueError, TypeError):
            raise ValueError(f"{path} is not an unencrypted PEM private key") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{path} is not an Ed25519 key")
        return cls(key)

    @classmethod
    def generate(cls, path: Path) -> Signer:
        """Write a new key to `path` (mode 0600) and `path`.pub; FileExistsError if either exists."""
        signer = cls(Ed25519PrivateKey.generate())
        pem = signer.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        pub = path.with_name(path.name + ".pub")
        if pub.exists():
            raise FileExistsError(str(pub))
        # Exclusive creation: never replace a key, even one created between a check and this write.
        with private.create(path) as out:
            out.write(pem)
            out.flush()
            os.fsync(out.fileno())
        # Anyone may read the public half; nobody else may write it: verify trusts what it says.
        with private.create(pub, 0o644) as out:
            out.write((signer.public_key + "\n").encode())
        return signer

    def sign_manifest(self, manifest: bytes) -> str:
        return self.key.sign(MANIFEST_ORIGIN + manifest).hex()

    def sign(self, tree_size: int, root: str, signed_at: str) -> Checkpoint:
        signature = self.key.sign(checkpoint_message(tree_size, root, signed_at)).hex()
        return Checkpoint(tree_size, root, signed_at, self.public_key, signature)
