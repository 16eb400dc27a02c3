"""radbench: benchmark vision foundation models on radiology tasks."""

__version__ = "0.1.0"


def load(output_dir):
    """A study's results as pandas DataFrames (`r.results`, `r.predictions`, ...): see radbench.report.api."""
    from radbench.report.api import load as _load

    return _load(output_dir)
