"""Reading a study or pretraining YAML file that may come from someone else: bounded in size and in what its
aliases expand to (a 1 KB file of nested `*aliases` can stand for billions of values: the "billion laughs"), keys
given twice refused, every problem one line naming the file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from radbench.errors import ConfigError

MAX_BYTES = 4 * 1024 * 1024  # a study of a thousand backbones is well under 1 MB
MAX_VALUES = 200_000  # values after alias expansion (the largest shipped study has under 2 000)


class DuplicateKey(Exception):
    pass


class UniqueKeyLoader(yaml.SafeLoader):
    """A key given twice in one mapping is an error (PyYAML would silently keep the last)."""

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise DuplicateKey(f"key {key!r} is given twice (lines {seen[key] + 1} and "
                                   f"{key_node.start_mark.line + 1}); keep one")
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep)


def load_yaml_file(path: Path, what: str = "study file") -> Any:
    """The file's single document as Python values; ConfigError (one line) for anything else."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise ConfigError(f"{path}: {size / 2**20:.1f} MB is too large for a {what} (at most "
                              f"{MAX_BYTES // 2**20} MB); is it the right file?")
        text = path.read_text()
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file; a {what} is YAML") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the {what} ({error.strerror or error})") from None
    loader = UniqueKeyLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expansion(node, path)
        return loader.construct_document(node)
    except DuplicateKey as error:
        raise ConfigError(f"{path}: {error}") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ConfigError(f"{path}: invalid YAML{where}: {problem}") from None
    except RecursionError:
        raise ConfigError(f"{path}: invalid YAML: nested too deeply") from None
    finally:
        loader.dispose()


def _check_expansion(root: yaml.Node, path: Path) -> None:
    """Count the values the document stands for once every alias is expanded, each shared node counted once per
    use (memoised, so the count itself is linear in the file); refuse a cycle or a count past MAX_VALUES."""
    sizes: dict[int, int] = {}
    active: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            active.discard(key)
            sizes[key] = 1 + sum(sizes[id(child)] for child in _children(node))
            if sizes[key] > MAX_VALUES:
                raise ConfigError(f"{path}: its YAML aliases (*name) expand to more than {MAX_VALUES:,} values; a "
                                  "study file never needs that many — refused (a 'billion laughs' file?)")
            continue
        if key in sizes:
            continue
        if key in active:
            raise ConfigError(f"{path}: a YAML alias (*name) refers to the node that contains it; refused")
        active.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node) if id(child) not in sizes)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []
