"""Decision answers held back until their eager activities answer.

A decision that schedules an eager activity is answered twice: the decision (RespondDecisionTask-
Completed) and, a moment later, the activity's result. Sent as they happen, the two commands are
about a millisecond apart; the history processor's fetch lands between them about one time in
four (measured on the counter benchmark), and then it records them in two transactions, the
second a whole processing turn later. Holding the decision until the eager attempts answer (at
most `hold_s`) sends both back to back: one fetch, one transaction, one turn.

The order on the commands topic is always decision first, then the eager answers (the history
processor refuses an answer for an activity it has not scheduled yet). An activity that runs past
the hold, or heartbeats, releases the decision at once and answers on its own later.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

Send = Callable[[], None]


class HeldAnswer:
    """One decision answer and the eager answers that arrived before it was sent."""

    __slots__ = ("send_decision", "deadline", "waiting", "answers", "sent")

    def __init__(self, send_decision: Send, waiting: int, deadline: float) -> None:
        self.send_decision = send_decision
        self.deadline = deadline
        self.waiting = waiting
        self.answers: list[Send] = []
        self.sent = False


class HeldAnswers:
    """The worker's held decision answers. Thread-safe: eager attempts answer from pool threads,
    deadlines expire on the poll thread. Every send happens under one lock, so a decision is on the
    producer's queue before any answer that depends on it."""

    def __init__(self, hold_s: float) -> None:
        self.hold_s = hold_s
        self._lock = threading.Lock()
        self._held: list[HeldAnswer] = []

    def hold(self, send_decision: Send, waiting: int) -> HeldAnswer:
        held = HeldAnswer(send_decision, waiting, time.monotonic() + self.hold_s)
        with self._lock:
            self._held.append(held)
        return held

    def answer(self, held: HeldAnswer, send: Send) -> None:
        """An eager attempt's answer: queued behind its decision, or sent now if that has gone.
        The last awaited answer releases the decision and everything queued."""
        with self._lock:
            if held.sent:
                send()
                return
            held.answers.append(send)
            held.waiting -= 1
            if held.waiting <= 0:
                self._release(held)

    def release(self, held: HeldAnswer) -> None:
        """Send the decision now (an eager attempt heartbeats: it is a long one)."""
        with self._lock:
            if not held.sent:
                self._release(held)

    def expire(self, now: float | None = None, everything: bool = False) -> None:
        """Send every decision whose hold has passed (all of them with `everything`, at stop)."""
        if not self._held:
            return
        now = time.monotonic() if now is None else now
        with self._lock:
            for held in self._held:
                if not held.sent and (everything or now >= held.deadline):
                    self._release(held)
            self._held = [h for h in self._held if not h.sent]

    def next_deadline(self) -> float | None:
        held = self._held
        return min((h.deadline for h in held if not h.sent), default=None) if held else None

    def _release(self, held: HeldAnswer) -> None:
        held.sent = True
        held.send_decision()
        for send in held.answers:
            send()
        held.answers.clear()
