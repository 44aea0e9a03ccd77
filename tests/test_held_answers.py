"""kadence/worker/_held.py: the order and release rules of held decision answers (pure, no broker; the
worker test drives them through the broker)."""

from __future__ import annotations

import threading

from kadence.worker._held import HeldAnswers


def test_the_last_awaited_answer_releases_the_decision_first() -> None:
    sent: list[str] = []
    held_answers = HeldAnswers(hold_s=60)
    held = held_answers.hold(lambda: sent.append("decision"), waiting=2)
    held_answers.answer(held, lambda: sent.append("a1"))
    assert sent == []  # one attempt still running: the decision waits
    held_answers.answer(held, lambda: sent.append("a2"))
    assert sent == ["decision", "a1", "a2"]
    held_answers.answer(held, lambda: sent.append("late"))  # e.g. a retried answer: straight through
    assert sent == ["decision", "a1", "a2", "late"]


def test_the_hold_expires_and_a_release_is_sent_once() -> None:
    sent: list[str] = []
    held_answers = HeldAnswers(hold_s=0.5)
    held = held_answers.hold(lambda: sent.append("decision"), waiting=1)
    deadline = held_answers.next_deadline()
    assert deadline is not None
    held_answers.expire(now=deadline - 0.1)
    assert sent == []
    held_answers.expire(now=deadline)
    assert sent == ["decision"] and held_answers.next_deadline() is None
    held_answers.release(held)  # a heartbeat after the expiry: nothing more
    held_answers.answer(held, lambda: sent.append("answer"))
    assert sent == ["decision", "answer"]


def test_stop_releases_everything_and_concurrent_answers_keep_the_order() -> None:
    sent: list[str] = []
    held_answers = HeldAnswers(hold_s=60)
    holds = [held_answers.hold(lambda i=i: sent.append(f"d{i}"), waiting=1) for i in range(50)]
    threads = [
        threading.Thread(target=held_answers.answer, args=(h, lambda i=i: sent.append(f"a{i}")))
        for i, h in enumerate(holds[:25])
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    held_answers.expire(everything=True)
    for i in range(50):
        assert sent.count(f"d{i}") == 1
        if i < 25:
            assert sent.index(f"d{i}") < sent.index(f"a{i}")
