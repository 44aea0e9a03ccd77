"""`kadence audit [--since TIME] [--replay MODULE]`: the history topic against the engine's state
(`kadence.audit`), with a progress bar on a terminal and log lines otherwise."""

from __future__ import annotations

import argparse
import json
import re
from datetime import UTC, datetime, timedelta
from types import TracebackType

from ._connect import connect
from ._errors import EXIT_FAILED, EXIT_OK, EXIT_UNREACHABLE, CliError, usage_error
from ._modules import import_user_module, workflow_classes
from ._progress import Progress

_STAGES = {
    "read": ("audit: reading history", "offset"),
    "ask": ("audit: asking the history processor", "execution"),
    "replay": ("audit: replaying", "run"),
}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(text: str, now: datetime | None = None) -> int:
    """`--since`: an ISO 8601 time (UTC unless it names a zone) or a duration back from now
    (`90s`, `15m`, `2h`, `1d`); epoch milliseconds."""
    now = now or datetime.now(UTC)
    match = _DURATION.fullmatch(text.strip())
    if match:
        when = now - timedelta(seconds=float(match.group(1)) * _UNIT_SECONDS[match.group(2)])
    else:
        try:
            when = datetime.fromisoformat(text.strip())
        except ValueError:
            raise usage_error(
                f"--since takes an ISO 8601 time (2026-05-01T12:00:00Z) or a duration (15m, 2h, 1d), got {text!r}"
            ) from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


class _StageProgress:
    """`kadence.audit`'s progress callback shown with the CLI's `Progress` (one per stage)."""

    def __init__(self) -> None:
        self._stage = ""
        self._shown = 0
        self._progress: Progress | None = None

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage != self._stage or self._progress is None:
            self.close()
            what, unit = _STAGES.get(stage, (f"audit: {stage}", "item"))
            self._stage, self._shown = stage, 0
            self._progress = Progress(what, total=total, unit=unit)
        if done > self._shown:
            self._progress.update(done - self._shown)
            self._shown = done

    def close(self, finished: bool = True) -> None:
        if self._progress is not None:
            self._progress.close(finished)
            self._progress = None

    def __enter__(self) -> _StageProgress:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close(finished=exc_type is None)


def cmd_audit(args: argparse.Namespace) -> int:
    from kadence import Client
    from kadence.audit import AuditError, run_audit, summary_lines

    since_ms = parse_since(args.since) if args.since else None
    workflows = workflow_classes(import_user_module(args.replay)) if args.replay else None
    settings = connect(args, lambda s: [s.history_topic, s.commands_topic, s.query_results_topic])
    with Client(settings, domain=args.domain) as client, _StageProgress() as progress:
        try:
            report = run_audit(
                client,
                since_ms=since_ms,
                workflows=workflows,
                progress=progress,
                answer_timeout_s=args.timeout,
            )
        except AuditError as exc:
            raise CliError(f"audit: {exc}", EXIT_UNREACHABLE) from None
    if args.output == "json":
        print(json.dumps(report.to_json(), default=str))
    else:
        for line in summary_lines(report):
            print(line)
    return EXIT_OK if report.ok else EXIT_FAILED
