"""Input records that stopped their processor instance: counted where a restarted instance sees
them, and set aside (dead-lettered with the error) after MAX_ATTEMPTS, as Kafka Streams' exception
handlers do. No input offset can keep a processor in a crash loop.

Most record-caused failures never get here: `streams.loop` dead-letters a record whose processing
raises (a `PoisonRecord`, or any error that is not the infrastructure's) or whose outputs exceed
the largest record, and goes on. This ledger is for a failure that leaves the batch and stops the
instance (for example a produce error the broker answers only at commit) and is caused by a record
(`errors.record_caused`): an infrastructure failure (broker down, fenced) is never counted, its
batch is simply retried.

Per input partition, a small JSON file in the state folder, so any instance that shares the state
folder sees it after a restart:
``<state_dir>/failed-inputs/<prefix><processor>.<partition>.json`` =
``{"first": f, "last": l, "attempts": n, "error": "..."}``.
While a partition has one, the runner processes it one record per batch, so the next failure names
a single offset; a single offset that failed MAX_ATTEMPTS times is dead-lettered with the stored
error instead of processed. The file goes once the partition's processed input is past `last`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

#: Attempts of one input offset that each stopped the instance before the offset is set aside.
MAX_ATTEMPTS = 3


class FailedInputs:
    """The ledger of one processor's partitions in one state folder (see the module docstring)."""

    def __init__(self, state_dir: str, owner: str, max_attempts: int = MAX_ATTEMPTS) -> None:
        self.folder = Path(state_dir) / "failed-inputs"
        self.owner = owner  # "<prefix><processor>": names the files
        self.max_attempts = max_attempts
        #: partition -> {"first", "last", "attempts", "error"}, for the partitions this instance owns
        self._open: dict[int, dict[str, object]] = {}

    def _path(self, partition: int) -> Path:
        return self.folder / f"{self.owner}.{partition}.json"

    def load(self, partition: int) -> None:
        """At assignment: pick up what an earlier instance recorded for `partition`."""
        try:
            self._open[partition] = json.loads(self._path(partition).read_text())
        except FileNotFoundError:
            self._open.pop(partition, None)
        except (OSError, ValueError) as exc:
            log.error(
                "%s: unreadable failed-input record for partition %d (%s); ignored",
                self.owner,
                partition,
                exc,
            )
            self._open.pop(partition, None)
        else:
            log.warning(
                "%s: partition %d: input offsets %s-%s stopped an instance %s time(s) (%s); processing them "
                "one at a time",
                self.owner,
                partition,
                self._open[partition]["first"],
                self._open[partition]["last"],
                self._open[partition]["attempts"],
                self._open[partition]["error"],
            )

    def forget(self, partition: int) -> None:
        """The partition was revoked: its file stays for the next owner."""
        self._open.pop(partition, None)

    @property
    def isolating(self) -> bool:
        """True while some owned partition has a suspect range: batches of one record."""
        return bool(self._open)

    def record(self, spans: dict[int, tuple[int, int]], error: str) -> None:
        """A batch covering `spans` (partition -> first, last offset) stopped the instance with a
        record-caused `error`. Written before the instance goes."""
        self.folder.mkdir(parents=True, exist_ok=True)
        for p, (first, last) in spans.items():
            previous = self._open.get(p)
            attempts = 1
            # the same range again, or a part of it (the batch redone one record at a time)
            if previous is not None and int(str(previous["first"])) <= first <= last <= int(
                str(previous["last"])
            ):
                attempts = int(str(previous["attempts"])) + 1
            entry: dict[str, object] = {
                "first": first,
                "last": last,
                "attempts": attempts,
                "error": error[:4000],
            }
            self._open[p] = entry
            tmp = self._path(p).with_suffix(".tmp")
            tmp.write_text(json.dumps(entry))
            os.replace(tmp, self._path(p))
            log.error(
                "%s: input %d[%d-%d] stopped the instance (attempt %d of %d before it is set aside): %s",
                self.owner,
                p,
                first,
                last,
                attempts,
                self.max_attempts,
                error,
            )

    def set_aside(self, partition: int, offset: int) -> str | None:
        """The dead-letter reason when the record at `offset` has used up its attempts, else None."""
        entry = self._open.get(partition)
        if entry is None or not entry["first"] == entry["last"] == offset:
            return None
        attempts = int(str(entry["attempts"]))
        if attempts < self.max_attempts:
            return None
        return f"set aside after it stopped the processor {attempts} times: {entry['error']}"

    def passed(self, partition: int, next_offset: int) -> None:
        """The partition's input up to `next_offset` is committed: a range below it is done."""
        entry = self._open.get(partition)
        if entry is not None and next_offset > int(str(entry["last"])):
            del self._open[partition]
            with contextlib.suppress(FileNotFoundError):
                self._path(partition).unlink()
            log.info("%s: partition %d is past the input that stopped an instance", self.owner, partition)


__all__ = ["MAX_ATTEMPTS", "FailedInputs"]
