"""`python -m processors.history --bootstrap ... --slot N`: one history processor instance."""

from __future__ import annotations

import sys

from kadence.streams.launch import processor_main
from kadence.streams.topics import ensure_core_topics

from .processor import HistoryProcessor

if __name__ == "__main__":
    sys.exit(processor_main(HistoryProcessor, prepare=ensure_core_topics, description=__doc__ or ""))
