from radbench.results.store import JobRecord, ResultsStore
from radbench.results.tables import metric_rows, predictions, summary

__all__ = ["JobRecord", "ResultsStore", "metric_rows", "predictions", "summary"]
