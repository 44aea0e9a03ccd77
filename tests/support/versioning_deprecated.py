"""`kadence replay --module` target: the Checkout sample at version 3 (the patch deprecated)."""

from __future__ import annotations

from examples.versioning import ACTIVITIES, CheckoutV3

WORKFLOWS = [CheckoutV3]
__all__ = ["WORKFLOWS", "ACTIVITIES"]
