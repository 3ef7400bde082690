"""Line numbers of a YAML rules document, so a validation error names its line.

`node_lines(text)` composes the document with PyYAML (its nodes carry start marks) and
maps every path (``("rules", 2, "threshold")``) to the 1-based line of its value;
`line_of(lines, path)` returns the line of the deepest known prefix of a path, so an
error on a missing field points at the item that lacks it.
"""

from __future__ import annotations

import re

import yaml

Path = tuple[str | int, ...]

_PATH = re.compile(r"^([A-Za-z_]+)((?:\[\d+\]|\.[A-Za-z_]+)*)")
_PART = re.compile(r"\[(\d+)\]|\.([A-Za-z_]+)")


def node_lines(text: str) -> dict[Path, int]:
    """Map each path of the document to the line its value starts on."""
    out: dict[Path, int] = {}
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    if root is None:
        return out
    stack: list[tuple[Path, yaml.Node]] = [((), root)]
    seen: set[int] = set()
    while stack:
        path, node = stack.pop()
        out.setdefault(path, node.start_mark.line + 1)
        if id(node) in seen:  # an alias: its contents are mapped once
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode):
                    out.setdefault((*path, str(key.value)), key.start_mark.line + 1)
                    stack.append(((*path, str(key.value)), value))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                stack.append(((*path, index), item))
    return out


def line_of(lines: dict[Path, int], path: Path) -> int | None:
    """Return the line of ``path``, or of its deepest prefix the document has."""
    for end in range(len(path), 0, -1):
        if path[:end] in lines:
            return lines[path[:end]]
    return None


def parse_path(message: str) -> Path:
    """Read the leading ``rules[2].channels`` of an error message as a path."""
    match = _PATH.match(message)
    if match is None:
        return ()
    parts: list[str | int] = [match.group(1)]
    for index, name in _PART.findall(match.group(2)):
        parts.append(int(index) if index else name)
    return tuple(parts)
