"""A faust-streaming codec for Kadence's Avro records, so Faust apps can consume Kadence topics.

```python
import faust
import kadence.contrib.faust  # registers the "kadence" codec

app = faust.App("billing", broker="kafka://localhost:9092")
completions = app.topic("kadence.completions", key_serializer="raw", value_serializer="kadence")

@app.agent(completions)
async def on_close(outcomes):
    async for outcome in outcomes:          # a WorkflowOutcome record (dict)
        print(outcome["workflow_id"], outcome["status"])
```

Decoding reads the single-object header, so one codec reads any Kadence record type (values of
`completions` are WorkflowOutcome, of `history` HistoryTransition, and so on) and older schema
versions. Faust is a consumer here only: it partitions keys with Python's `hash()`, not murmur2,
so never produce Kadence commands through Faust (use `kadence.client.Client`).
"""

from __future__ import annotations

from typing import Any

from faust.serializers import codecs

from kadence.streams.serde import serde

#: Name under which the generic codec is registered with Faust.
CODEC_NAME = "kadence"


class KadenceCodec(codecs.Codec):
    """Kadence single-object Avro <-> record dicts.

    `record_type` (e.g. "WorkflowOutcome") makes `loads` reject other record types and lets
    `dumps` take a bare record; without it, `dumps` takes a ``(record_type, record)`` pair.
    """

    def __init__(
        self, record_type: str | None = None, children: tuple[codecs.Codec, ...] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(children=children, record_type=record_type, **kwargs)

    @property
    def record_type(self) -> str | None:
        return self.kwargs.get("record_type")

    def _loads(self, s: bytes) -> dict[str, Any]:
        _, record = serde().decode(s, expected=self.record_type)
        return record

    def _dumps(self, s: Any) -> bytes:
        if isinstance(s, tuple) and len(s) == 2 and isinstance(s[0], str):
            record_type, record = s
            if self.record_type is not None and record_type != self.record_type:
                raise ValueError(f"this codec writes {self.record_type} records, not {record_type}")
        elif self.record_type is not None:
            record_type, record = self.record_type, s
        else:
            raise TypeError(
                "the generic kadence codec needs a (record_type, record) pair to encode; "
                "use KadenceCodec(record_type=...) to encode bare records"
            )
        return serde().encode(record_type, record)


def codec_for(record_type: str) -> KadenceCodec:
    """A codec for one record type, e.g. ``value_serializer=codec_for("WorkflowOutcome")``."""
    return KadenceCodec(record_type=record_type)


codecs.register(CODEC_NAME, KadenceCodec())

__all__ = ["KadenceCodec", "codec_for", "CODEC_NAME"]
