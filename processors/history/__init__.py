"""The history processor: the only writer of the history topic (DESIGN.md section 6)."""

from .config import HistoryConfig
from .processor import HistoryProcessor

__all__ = ["HistoryProcessor", "HistoryConfig"]
