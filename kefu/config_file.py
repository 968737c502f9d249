"""The configuration file: one YAML document, one top-level section per service.

Every error names the file, the line and the field (``kefu.yaml:42: routing.queues.3.skills: ...``). The text is
composed into PyYAML's node tree first and only then constructed, with the safe loader (the same tags as
``yaml.safe_load``), so that a pydantic error location can be walked back down the tree to the line it came from.

A model validator that finds several problems, or a problem deeper than itself (a cross-reference between queues,
say), may raise a ``ValueError`` with a ``problems`` attribute: a sequence of ``(loc, message)`` pairs, ``loc``
relative to the model being validated. Each is reported on its own line, at its own place in the file.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)
Loc = tuple[str | int, ...]


class ConfigError(ValueError):
    """The configuration file is missing, unreadable or invalid; each of ``errors`` says where."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


@dataclass(frozen=True, slots=True)
class Source:
    """A parsed configuration file: its data, and the node tree that remembers where each value was written."""

    path: Path
    data: dict[str, Any]
    root: yaml.Node | None

    def where(self, loc: Loc) -> str:
        """``file:line: dotted.field`` for ``loc``; the line of the deepest node of ``loc`` present in the file."""
        return f"{self.at(loc)}: {_dotted(loc)}"

    def at(self, loc: Loc) -> str:
        """``file:line`` of ``loc``, as in ``where``."""
        return f"{self.path}:{_line_of(self.root, loc)}"


def read(path: Path) -> Source:
    """Read and parse the YAML file at ``path``; its top level must be a mapping of sections."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from exc
    return parse(text, path)


def parse(text: str, path: Path) -> Source:
    """Parse configuration ``text`` (named ``path`` in messages); its top level must be a mapping of sections."""
    try:
        loader = yaml.SafeLoader(text)  # refuses control characters already, before any parsing
    except yaml.YAMLError as exc:
        raise ConfigError([_yaml_error(exc, text, path)]) from exc
    try:
        root = loader.get_single_node()
        data = loader.construct_document(root) if root is not None else {}
    except yaml.YAMLError as exc:
        raise ConfigError([_yaml_error(exc, text, path)]) from exc
    finally:
        loader.dispose()
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([f"{path}: the top level must be a mapping of sections"])
    return Source(path, data, root)


def parse_section(source: Source, section: str, model: type[M]) -> M:
    """Validate the top-level ``section`` of ``source`` as ``model``; ConfigError lists every problem found."""
    errors = [f"{source.where((section, *loc))}: duplicate key" for loc in _duplicate_keys(source.root, (section,))]
    try:
        parsed = model.model_validate(source.data.get(section) or {})
    except ValidationError as exc:
        errors += [f"{source.where((section, *loc))}: {message}" for loc, message in _problems(exc)]
    if errors:
        raise ConfigError(errors)
    return parsed


def load_section(path: Path, section: str, model: type[M]) -> M:
    """Parse the top-level ``section`` of the YAML file at ``path`` as ``model``."""
    return parse_section(read(path), section, model)


def _yaml_error(exc: yaml.YAMLError, text: str, path: Path) -> str:
    # PyYAML's own text names the file "<unicode string>" and draws the line with a caret over several lines
    if isinstance(exc, yaml.reader.ReaderError):
        line = text.count("\n", 0, exc.position) + 1
        return f"{path}:{line}: not valid YAML: character #x{exc.character:04x}: {exc.reason}"
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        message = f"{path}:{mark.line + 1}: not valid YAML: {exc.problem} (column {mark.column + 1})"
        if exc.context and exc.context_mark is not None:
            begun = exc.context_mark
            message += f", {exc.context} begun at line {begun.line + 1}, column {begun.column + 1}"
        return message
    return f"{path}: not valid YAML: {exc}"


def _problems(exc: ValidationError) -> list[tuple[Loc, str]]:
    found: list[tuple[Loc, str]] = []
    for err in exc.errors():
        cause = (err.get("ctx") or {}).get("error")
        nested: Sequence[tuple[Loc, str]] | None = getattr(cause, "problems", None)
        if nested:
            found += [((*err["loc"], *loc), message) for loc, message in nested]
        elif err["type"] == "value_error" and cause is not None:
            found.append((tuple(err["loc"]), str(cause)))  # without pydantic's "Value error, " prefix
        else:
            found.append((tuple(err["loc"]), err["msg"]))
    return found


def _is_tag(part: str | int) -> bool:
    # pydantic puts union members and key markers in its locations ("list[date]", "literal['CN']", "[key]");
    # they are no place in the file, so they are neither walked nor printed.
    return isinstance(part, str) and ("[" in part or "]" in part)


def _dotted(loc: Loc) -> str:
    return ".".join(str(part) for part in loc if not _is_tag(part))


def _line_of(node: yaml.Node | None, loc: Loc) -> int:
    if node is None:
        return 1
    line = node.start_mark.line + 1
    for part in loc:
        if _is_tag(part):
            continue
        child: yaml.Node | None = None
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                    line, child = key.start_mark.line + 1, value
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            child = node.value[part]
            line = child.start_mark.line + 1
        if child is None:
            break  # a missing field: the nearest parent that exists is the best place to point at
        node = child
    return line


def _duplicate_keys(root: yaml.Node | None, loc: Loc) -> list[Loc]:
    # yaml.safe_load silently keeps the last of two equal keys; in a configuration that is nearly always a mistake.
    node = root
    for part in loc:
        if not isinstance(node, yaml.MappingNode):
            return []
        node = next((v for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == part), None)
    found: list[Loc] = []
    stack: list[tuple[yaml.Node | None, Loc]] = [(node, ())]
    visited: set[int] = set()  # aliases share nodes, and may even point back at their own ancestors
    while stack:
        current, at = stack.pop()
        if id(current) in visited:
            continue
        visited.add(id(current))
        if isinstance(current, yaml.MappingNode):
            seen: set[str] = set()
            for key, value in current.value:
                if isinstance(key, yaml.ScalarNode):
                    if key.value in seen and key.value != "<<":
                        found.append((*at, key.value))
                    seen.add(key.value)
                    stack.append((value, (*at, key.value)))
        elif isinstance(current, yaml.SequenceNode):
            stack += [(item, (*at, i)) for i, item in enumerate(current.value)]
    return found


@dataclass(frozen=True, slots=True)
class Report:
    """The errors and warnings of a set of configuration files, and each section that is valid."""

    errors: list[str]
    warnings: list[str]
    sections: dict[str, BaseModel]

    def section(self, name: str, model: type[M]) -> M:
        """The validated section ``name``; its defaults when no file has it (no ``auth`` section: no tokens)."""
        found = self.sections.get(name)
        if found is None:
            return model.model_validate({})
        if not isinstance(found, model):
            raise TypeError(f"section {name!r} is a {type(found).__name__}, not a {model.__name__}")
        return found
