"""Errors and warnings of the data layer, and the one-line check that raises them."""

from __future__ import annotations

from ..errors import WAEError

__all__ = ["DataError", "DataWarning", "fail_if"]


class DataError(WAEError, ValueError):
    """A dataset is missing, malformed or misconfigured.

    The message is one paragraph: what was wrong, where, and what to do about it.
    """


class DataWarning(UserWarning):
    """Something about the data was changed on the fly (colour conversion, skipped files)."""


def fail_if(cond: bool, msg: str) -> None:
    """Raise :class:`DataError` with ``msg`` when ``cond`` holds."""
    if cond:
        raise DataError(msg)
