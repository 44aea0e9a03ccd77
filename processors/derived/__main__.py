"""`python -m processors.derived [--modules children,signals,...] --bootstrap ... --slot N`.

Without --modules (or KADENCE_DERIVED_MODULES) every derived module runs in this one process over
one consumer of history.
"""

from __future__ import annotations

import os
import sys

from kadence.streams.launch import processor_main
from kadence.streams.topics import ensure_core_topics

from .processor import ALL_MODULES, DerivedProcessor


def _take_modules(argv: list[str]) -> tuple[list[str], list[str]]:
    env = os.environ.get("KADENCE_DERIVED_MODULES", "")
    modules = [m for m in env.split(",") if m] or list(ALL_MODULES)
    if "--modules" in argv:
        i = argv.index("--modules")
        modules = [m for m in argv[i + 1].split(",") if m]
        argv = argv[:i] + argv[i + 2 :]
    return modules, argv


if __name__ == "__main__":
    chosen, rest = _take_modules(sys.argv[1:])
    sys.exit(
        processor_main(
            lambda s: DerivedProcessor(s, chosen), rest, prepare=ensure_core_topics, description=__doc__ or ""
        )
    )
