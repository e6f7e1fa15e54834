"""Errors and warnings of the data layer, and the one-line check that raises them."""

from __future__ import annotations

from ..errors import WAEError

__all__ = [
    "DOWNLOAD_HINT",
    "SKIP_BAD_HINT",
    "DataError",
    "DataWarning",
    "check_classes",
    "check_side",
    "fail_if",
]

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


def check_side(value: object, what: str, lo: int, hi: int, examples: str) -> None:
    """A generated dataset's image side: an int, a multiple of 16, from `lo` to `hi`."""
    ok = isinstance(value, int) and not isinstance(value, bool)
    fail_if(
        not ok or value % 16 or not lo <= value <= hi,  # type: ignore[operator]
        f"The {what} must be a multiple of 16 from {lo} to {hi}, got {value!r}. Use e.g. "
        f"{examples}.",
    )


def check_classes(chosen: tuple[str, ...], allowed: tuple[str, ...], what: str) -> tuple[str, ...]:
    """Two or more distinct names out of `allowed`, sorted (the label order)."""
    unknown = sorted(set(chosen) - set(allowed))
    fail_if(
        bool(unknown) or len(set(chosen)) < 2,
        f"{what} must be two or more of {', '.join(allowed)}; got {list(chosen)} (unknown: "
        f"{unknown}). Fix the list after the colon.",
    )
    return tuple(sorted(set(chosen)))
