"""Signatures on the records only the engine may write: HMAC-SHA256 of the record's key and value,
keyed with the deployment's engine secret (`streams.engine_secret`), in the `kadence-sig` header.

The engine signs every command it writes to `commands`; the history processor accepts an
engine-only command (`history.commands.engine_only_reason`) only with a valid signature, so a
producer that may write `commands` (every client and worker) cannot forge one. A signature is a
function of the bytes alone: a redo after a crash signs the same bytes again and gets the same
header, so byte-identical redos and deterministic ids are kept (docs/architecture.md §7).
"""

from __future__ import annotations

import hmac
import struct

#: The record header that carries the signature (32 raw bytes).
SIGNATURE_HEADER = "kadence-sig"

_NO_KEY = b"\xff\xff\xff\xff"
_LENGTH = struct.Struct(">I")


class RecordSigner:
    """Signs and checks records with one engine secret (at least 16 bytes)."""

    __slots__ = ("_secret",)

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("the engine secret must be at least 16 bytes long")
        self._secret = secret

    def signature(self, key: bytes | None, value: bytes) -> bytes:
        """HMAC-SHA256 of the key (length-prefixed, so key and value cannot trade bytes) and value."""
        framed = (_NO_KEY if key is None else _LENGTH.pack(len(key)) + key) + value
        return hmac.digest(self._secret, framed, "sha256")

    def sign(
        self, headers: tuple[tuple[str, bytes], ...], key: bytes | None, value: bytes
    ) -> tuple[tuple[str, bytes], ...]:
        """`headers` with the record's signature appended."""
        return (*headers, (SIGNATURE_HEADER, self.signature(key, value)))

    def verify(self, headers: tuple[tuple[str, bytes], ...], key: bytes | None, value: bytes) -> bool:
        """Whether the record carries exactly one signature header and it is valid for its bytes."""
        found = [v for name, v in headers if name == SIGNATURE_HEADER]
        return (
            len(found) == 1
            and isinstance(found[0], bytes)  # a header may come without a value
            and hmac.compare_digest(found[0], self.signature(key, value))
        )


__all__ = ["SIGNATURE_HEADER", "RecordSigner"]
