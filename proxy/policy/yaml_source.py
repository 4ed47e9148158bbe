"""Read a policy YAML document and remember where every value came from.

PyYAML's composer gives nodes with line marks; the document is built from those nodes and a
map from each path (`("rules", 0, "masks", "public.customers.email")`) to its line is kept so
later checks can point at the line they complain about. Duplicate mapping keys — which PyYAML
silently resolves to the last one, so a second `effect:` could flip a rule — are problems.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from pgwarden.proxy.policy.errors import Problem

Path = tuple[str | int, ...]
MAX_NODES = 200_000
MAX_BYTES = 4 * 1024 * 1024


@dataclass
class Document:
    """A parsed YAML file: its data, and the line (1-based) of every path in it."""

    file: str
    data: Any
    lines: dict[Path, int] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    def line(self, path: Path) -> int | None:
        """The line of `path`, or of its nearest ancestor that has one."""
        for end in range(len(path), -1, -1):
            found = self.lines.get(tuple(path[:end]))
            if found is not None:
                return found
        return None


class _TooLarge(Exception):
    pass


def load(text: str, file: str) -> Document:
    """Parse `text`; YAML errors become problems (with the line) and `data` None."""
    if len(text.encode("utf-8", "replace")) > MAX_BYTES:
        return Document(file, None, problems=[Problem(file, None, None, "file is larger than 4 MiB")])
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        message = f"YAML error: {exc.problem or exc.context or 'invalid YAML'}"
        return Document(file, None, problems=[Problem(file, line, None, message)])
    except yaml.YAMLError:
        return Document(file, None, problems=[Problem(file, None, None, "YAML error")])
    doc = Document(file, None)
    if node is None:
        doc.problems.append(Problem(file, 1, None, "the file is empty"))
        return doc
    counter = [0]
    try:
        doc.data = _build(node, (), doc, counter)
    except _TooLarge:
        doc.data = None
        doc.problems.append(Problem(file, None, None, "document has too many nodes (aliases?)"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        doc.data = None
        doc.problems.append(Problem(file, mark.line + 1 if mark else None, None,
                                    "YAML error: a value could not be read"))
    return doc


_CONSTRUCTOR = yaml.SafeLoader("")


def _build(node: yaml.Node, path: Path, doc: Document, counter: list[int]) -> Any:
    counter[0] += 1
    if counter[0] > MAX_NODES:
        raise _TooLarge
    doc.lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        _CONSTRUCTOR.flatten_mapping(node)  # merge keys (`<<: *anchor`)
        for key_node, value_node in node.value:
            key = _build(key_node, path, doc, counter)
            if not isinstance(key, str | int | bool | float) and key is not None:
                doc.problems.append(Problem(doc.file, key_node.start_mark.line + 1, None,
                                            "mapping keys must be plain values"))
                continue
            if key in out:
                doc.problems.append(Problem(doc.file, key_node.start_mark.line + 1, None,
                                            f"duplicate key {key!r}"))
            child = (*path, key if isinstance(key, str | int) else str(key))
            doc.lines[child] = key_node.start_mark.line + 1
            out[key] = _build(value_node, child, doc, counter)
        return out
    if isinstance(node, yaml.SequenceNode):
        items = []
        for index, item in enumerate(node.value):
            child = (*path, index)
            doc.lines[child] = item.start_mark.line + 1
            items.append(_build(item, child, doc, counter))
        return items
    return _CONSTRUCTOR.construct_object(node, deep=True)
