"""Progress of long work (`kadence replay`, and any other verb that walks many runs or records):
a tqdm bar on stderr when stderr is a terminal; otherwise plain log lines (logger
`kadence.progress`, INFO), one every `every_s` seconds while the work goes on and one at the end
(at DEBUG when the work was quicker than that: short work stays quiet).

    with Progress("replay", total=len(runs), unit="run") as progress:
        for run in runs:
            ...
            progress.update()

The CLI shows `kadence.progress` at INFO unless --log-level asks for less (ERROR and above), so a
job in a pipeline or under a scheduler still says how far it got.
"""

from __future__ import annotations

import logging
import sys
import time
from types import TracebackType
from typing import Any, TextIO

log = logging.getLogger("kadence.progress")


class Progress:
    def __init__(
        self,
        what: str,
        total: int | None,
        unit: str = "item",
        *,
        stream: TextIO | None = None,
        every_s: float = 5.0,
        bar_delay_s: float = 0.0,
    ) -> None:
        self.what, self.total, self.unit, self.every_s = what, total, unit, every_s
        self.done = 0
        self._t0 = self._last_line = time.monotonic()
        stream = sys.stderr if stream is None else stream
        self._bar: Any = None
        if stream.isatty():
            from tqdm import tqdm

            # leave=False: the bar is erased when the work ends (quick work leaves nothing on the
            # screen), and the verb's summary follows on a clean line.
            self._bar = tqdm(
                total=total,
                desc=what,
                unit=unit,
                file=stream,
                delay=bar_delay_s,
                leave=False,
                dynamic_ncols=True,
            )

    @property
    def is_bar(self) -> bool:
        return self._bar is not None

    def update(self, n: int = 1) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
            return
        now = time.monotonic()
        if now - self._last_line >= self.every_s:
            self._last_line = now
            log.info("%s: %s", self.what, self._count())

    def close(self, finished: bool = True) -> None:
        """End the bar; log the last line (not when the work stopped on an error: the error says)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
            return
        took = time.monotonic() - self._t0
        if finished:
            level = logging.INFO if took >= self.every_s else logging.DEBUG
            log.log(level, "%s: %s done in %.1fs", self.what, self._count(), took)

    def _count(self) -> str:
        unit = self.unit if self.done == 1 and self.total in (None, 1) else f"{self.unit}s"
        if self.total:
            return f"{self.done}/{self.total} {unit} ({100 * self.done // self.total}%)"
        return f"{self.done} {unit}"

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close(finished=exc_type is None)
