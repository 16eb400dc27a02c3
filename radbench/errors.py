"""User-facing errors: one clear line naming the bad key, file or row; the CLI exits non-zero on them."""

from __future__ import annotations

import difflib
from typing import Callable, Iterable


def did_you_mean(name: str, choices: Iterable[str], quote: Callable[[str], str] = repr, cutoff: float = 0.6) -> str:
    """' (did you mean 'x'?)' for the nearest of `choices` to a misspelt `name`, or '' when none is near."""
    near = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=cutoff)
    return f" (did you mean {quote(near[0])}?)" if near else ""


class RadbenchError(Exception):
    """An error caused by the user's input (config, data, checkpoint), reported without a traceback."""


class ConfigError(RadbenchError):
    """The study YAML is invalid."""


class DataError(RadbenchError):
    """A dataset file, row or label is invalid."""


class BackboneError(RadbenchError):
    """A backbone cannot be built or its weights cannot be loaded."""


class DownloadError(RadbenchError):
    """Weights or a dataset could not be downloaded (usually: no network)."""


class JobFailed(RadbenchError):
    """A job failed and the run stopped there (`--fail-fast`, or ranks training together); the cause is chained."""
