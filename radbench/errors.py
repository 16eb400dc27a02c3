"""User-facing errors: one clear line naming the bad key, file or row; the CLI exits non-zero on them."""


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
