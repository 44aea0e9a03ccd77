"""docs/publishing-without-kadence.md says what is true: the partition formula is Kadence's, the
example starts a workflow type a sample worker serves on that task list, and every repository path
it names exists. (The record bytes and the broker round trip are tests/test_serde.py's.)"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from kadence.streams.clients import _murmur2, murmur2_partition

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "publishing-without-kadence.md"


def test_the_partition_formula_is_the_one_kadence_uses() -> None:
    text = DOC.read_text()
    assert "`(murmur2(key) & 0x7fffffff) % partitions`" in text
    assert "& 0x7fffffff %" not in text  # without parentheses `%` binds first: a different number
    for key in (b"hello-1", b"order-42", b"x"):
        for partitions in (3, 4, 12):
            assert murmur2_partition(key, partitions) == (_murmur2(key) & 0x7FFFFFFF) % partitions


def test_the_example_starts_a_workflow_a_sample_worker_serves() -> None:
    from examples.worker import TASK_LISTS

    (block,) = re.findall(
        r"```bash\n(python examples/publish_start_raw\.py.*?)\n(?:kadence|```)", DOC.read_text(), re.S
    )
    argv = shlex.split(block.replace("\\\n", " "))
    flags = dict(zip(argv[2::2], argv[3::2], strict=False))
    task_list, workflow_type = flags["--task-list"], flags["--workflow-type"]
    assert task_list in TASK_LISTS, f"no sample worker polls {task_list!r}"
    workflows, _ = TASK_LISTS[task_list]
    assert workflow_type in {w.__name__ for w in workflows}


def test_every_path_the_doc_names_exists() -> None:
    text = DOC.read_text()
    named = set(re.findall(r"`((?:schemas|examples|docs)/[\w./-]+)`", text))
    named |= {f"docs/{link}" for link in re.findall(r"\]\(([\w.-]+\.md)\)", text)}
    named |= {f"schemas/{name}" for name in re.findall(r"`(\w+\.avsc)`", text)}
    assert named, "the doc names no files?"
    missing = sorted(p for p in named if not (REPO / p).exists())
    assert missing == []
