"""The `radbench` command line: one module per command group, all registered on one typer app.

    common.py   the app, consoles, one-line errors, study loading with overrides, the local run, the summary
    run.py      run, plan, extract
    results.py  results, status, report
    catalog.py  list, quickstart
    pretrain.py pretrain"""

# the import order is the order `radbench --help` lists the commands in
from radbench.cli.common import app, err, out  # noqa: I001
from radbench.cli import run  # noqa: F401,E402
from radbench.cli import results  # noqa: F401,E402
from radbench.cli import pretrain  # noqa: F401,E402
from radbench.cli import catalog  # noqa: F401,E402

__all__ = ["app", "err", "out"]
