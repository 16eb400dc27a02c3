from radbench.metrics.classification import (
    METRIC_NAMES,
    classification_metrics,
    default_selection_metric,
    selectable_metrics,
)

__all__ = ["METRIC_NAMES", "classification_metrics", "default_selection_metric", "selectable_metrics"]
