"""radbench: benchmark vision foundation models on radiology tasks.

    results = radbench.run("study.yaml", limit=100)     # run (resumes), then the results as DataFrames
    results = radbench.load("runs/study")               # a finished or partial study's results
    @radbench.register_backbone("mine")                 # an in-house nn.Module as a backbone
"""

__version__ = "0.1.0"


def load(output_dir):
    """A study's results as pandas DataFrames (`r.results`, `r.predictions`, ...): see radbench.report.api."""
    from radbench.report.api import load as _load

    return _load(output_dir)


def run(study, **overrides):
    """Run a study (YAML path, dict or StudyConfig) and return its results: see radbench.api.run."""
    from radbench.api import run as _run

    return _run(study, **overrides)


def register_backbone(name, **options):
    """Decorator registering `build(image_size, weights) -> nn.Module` as backbone `name`: radbench.api."""
    from radbench.api import register_backbone as _register

    return _register(name, **options)
