"""Errors and warnings of the data layer, and the one-line check that raises them."""

from __future__ import annotations

from ..errors import WAEError

__all__ = ["DOWNLOAD_HINT", "SKIP_BAD_HINT", "DataError", "DataWarning", "fail_if"]

#: How a user turns on skipping unreadable images, in every error that suggests it.
SKIP_BAD_HINT = (
    "or skip such images with a warning: --set data.skip_bad=true (wae train), "
    "skip_bad=True (build_dataset)"
)
#: How a user allows a download, in every error that suggests it (there is no --download).
DOWNLOAD_HINT = "data.download=true when online (wae train --set data.download=true)"


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
