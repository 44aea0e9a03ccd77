"""The one builder of `DeadLetter` records (the processing loop's and the workers'): a bounded copy
of the input, so a dead letter always fits in a record however large its input was.

The copy holds at most the first DEAD_LETTER_COPY_BYTES of the input's key and of its value;
`value_size`, `value_sha256` and `key_size` describe the whole input, and the reason says when a
copy was cut. The reason itself is cut at MAX_REASON_CHARS.
"""

from __future__ import annotations

import hashlib
from typing import Any

from .settings import DEAD_LETTER_COPY_BYTES

#: A dead letter's reason is cut to this many characters.
MAX_REASON_CHARS = 8000


def dead_letter_record(
    *,
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    reason: str,
    processor: str,
    timestamp: int,
) -> dict[str, Any]:
    """The `DeadLetter` record of an input that `processor` could not handle, for `reason`."""
    if len(reason) > MAX_REASON_CHARS:
        reason = f"{reason[:MAX_REASON_CHARS]}... ({len(reason)} characters)"
    if value is not None and len(value) > DEAD_LETTER_COPY_BYTES:
        reason += f" [value: the first {DEAD_LETTER_COPY_BYTES} of {len(value)} bytes]"
    if key is not None and len(key) > DEAD_LETTER_COPY_BYTES:
        reason += f" [key: the first {DEAD_LETTER_COPY_BYTES} of {len(key)} bytes]"
    return {
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "key": key[:DEAD_LETTER_COPY_BYTES] if key is not None else None,
        "value": value[:DEAD_LETTER_COPY_BYTES] if value is not None else None,
        "reason": reason,
        "processor": processor,
        "timestamp": timestamp,
        "value_size": len(value) if value is not None else -1,
        "value_sha256": hashlib.sha256(value).hexdigest() if value is not None else "",
        "key_size": len(key) if key is not None else -1,
    }


__all__ = ["MAX_REASON_CHARS", "dead_letter_record"]
