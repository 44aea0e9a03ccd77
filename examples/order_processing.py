"""OrderProcessing: a parent runs Payment, Inventory and Shipping children in parallel and
compensates when one fails. `python -m examples.order_processing` runs two orders against
`kadence server`.

The workflows live in `kadence.samples.order_processing`, because `kadence demo` runs them from
an installed wheel; this module re-exports them for the other samples and the tests."""

from __future__ import annotations

from kadence.samples.order_processing import *  # noqa: F403 - the sample's public names
from kadence.samples.order_processing import TASK_LISTS, run_sample

if __name__ == "__main__":
    from ._runner import main

    main(run_sample, TASK_LISTS)
