"""Which class of one dataset is which class of another, for external tests. Names are compared after
torchxrayvision's relabelling (its datasets rename e.g. CheXpert's "Pleural Effusion" to "Effusion"), case, spaces
and underscores aside. torchxrayvision's renames are read from its own source, not retyped here; without the
package (radbench[xrv]) classes match by name alone."""

from __future__ import annotations

import functools
import re

from radbench.errors import DataError, did_you_mean

_RENAME = re.compile(r'np\.char\.replace\([^,]+,\s*"([^"]+)",\s*"([^"]+)"\)')
_SYNONYM = re.compile(r'mapping\["([^"]+)"\]\s*=\s*\["([^"]+)"\]')  # a one-synonym entry of a relabelling map


def normalise(name: str) -> str:
    return re.sub(r"[\s_\-]+", " ", str(name)).strip().lower()


@functools.lru_cache(maxsize=1)
def xrv_aliases() -> dict[str, str] | None:
    """{normalised alias: torchxrayvision's pathology name}, or None without torchxrayvision."""
    try:
        import inspect

        import torchxrayvision.datasets as xrv_datasets
    except ImportError:
        return None
    source = inspect.getsource(xrv_datasets)
    aliases = {normalise(old): new for old, new in _RENAME.findall(source)}
    aliases.update({normalise(synonym): name for name, synonym in _SYNONYM.findall(source)})
    aliases.update({normalise(name): name for name in xrv_datasets.default_pathologies})
    return aliases


def canonical(name: str) -> str:
    aliases = xrv_aliases() or {}
    return normalise(aliases.get(normalise(name), name))


def match_classes(source: tuple[str, ...], external: tuple[str, ...], given: dict[str, str] | None,
                  where: str) -> list[tuple[int, int]]:
    """(source class index, external class index) pairs: `given` ({source: external}) when the study gives it,
    else every source class whose canonical name an external class shares. A given name that is not a class, or
    no pair at all, is a DataError naming `where`."""
    if given is not None:
        pairs = []
        for mine, theirs in given.items():
            for name, names, side in ((mine, source, "this dataset"), (theirs, external, "the external dataset")):
                if name not in names:
                    raise DataError(f"{where}.classes: {name!r} is not a class of {side}{did_you_mean(name, names)}; "
                                    f"its classes: {', '.join(names)}")
            pairs.append((source.index(mine), external.index(theirs)))
        return pairs
    theirs = {canonical(name): j for j, name in enumerate(external)}
    pairs = [(i, theirs[canonical(name)]) for i, name in enumerate(source) if canonical(name) in theirs]
    if not pairs:
        raise DataError(f"{where}: no class of this dataset ({', '.join(source)}) matches a class of the external "
                        f"dataset ({', '.join(external)}); map them with `classes: {{mine: theirs}}`")
    return pairs
