"""The CLI's exit codes, and `CliError`: the one-line `kadence: ...` error a command stops with."""

from __future__ import annotations

EXIT_OK = 0
#: Not found, workflow failed / not running, timed out, query failed, non-determinism.
EXIT_FAILED = 1
EXIT_USAGE = 2
#: The broker did not answer (or the topics are missing).
EXIT_UNREACHABLE = 3
EXIT_INTERRUPTED = 130


class CliError(SystemExit):
    """A user-facing error: `main` prints `kadence: <message>` on stderr and returns `exit_code`.

    A SystemExit, so that a helper called outside `main` (e.g. `settings_from_args` in a test) still
    stops with the message rather than a traceback."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


def usage_error(message: str) -> CliError:
    """A CliError for a bad flag, JSON value or module: exit 2."""
    return CliError(message, EXIT_USAGE)
