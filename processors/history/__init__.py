"""The history processor: the only writer of the history topic (docs/architecture.md)."""

from .config import HistoryConfig
from .processor import HistoryProcessor

__all__ = ["HistoryProcessor", "HistoryConfig"]
