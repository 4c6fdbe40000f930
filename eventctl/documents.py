"""Documents people write — ``apply`` files, ``--filters`` JSON, categories files — read strictly.

One reader for every input path, so each bound is decided once:

- JSON is read as JSON (a ``.json`` file, or text whose first character is ``[`` or ``{``),
  never as YAML 1.1, so everything ``json.dumps`` writes (surrogate-pair escapes, tabs)
  reads back; ``NaN``/``Infinity`` and numbers out of range are refused.
- YAML is read with the safe loader (libyaml's parser where installed), timestamps kept as
  text, and only the plain types: strings, integers, floats, booleans, null, lists and
  mappings (and ``<<`` merges). ``!!binary``, ``!!set`` and other tags are refused: their
  values would become text after the checks that refuse control characters ran.
- Duplicate keys are refused in both, naming the key (last-one-wins would let
  ``is_active: false … is_active: true`` hide in a file).
- Size: the caller bounds the bytes; here the document's expanded size (YAML aliases
  counted as the copies they make) and depth are bounded before anything is built, so a
  400-byte alias bomb costs microseconds, not gigabytes.
- A UTF-8 byte-order mark is accepted and dropped.
"""

from __future__ import annotations

import json
import math
from typing import Any

from eventctl.errors import InvalidInput
from eventctl.text import excerpt

MAX_NODES = 5_000_000  # values in the expanded document (~100,000 events of ~25 values, with room)
MAX_DEPTH = 32  # an event file is 4 deep (list, event, filters, list)
_YAML_TAGS = frozenset(f"tag:yaml.org,2002:{t}" for t in ("null", "bool", "int", "float", "str", "seq", "map", "merge"))


def strip_bom(text: str) -> str:
    return text[1:] if text.startswith("\ufeff") else text


def is_json(text: str, *, name: str | None = None) -> bool:
    """JSON by the file's name, else by its first character."""
    if name is not None and name.lower().endswith(".json"):
        return True
    return strip_bom(text).lstrip()[:1] in ("[", "{")


def load(text: str, *, source: str, name: str | None = None) -> Any:
    """A JSON or YAML document (see the module's rules)."""
    text = strip_bom(text)
    return load_json(text, source=source) if is_json(text, name=name) else load_yaml(text, source=source)


# ---------------------------------------------------------------- JSON


def _pairs(source: str) -> Any:
    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in pairs:
            if key in out:
                raise InvalidInput(f"{source} has the key {excerpt(key)} twice in one object.")
            out[key] = value
        return out

    return hook


def _constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:40]} is out of range")
    return value


def load_json(text: str, *, source: str) -> Any:
    """JSON with duplicate keys, NaN/Infinity and out-of-range numbers refused, depth bounded."""
    try:
        data = json.loads(
            strip_bom(text), object_pairs_hook=_pairs(source), parse_constant=_constant, parse_float=_finite
        )
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{source} is not valid JSON at line {exc.lineno} ({exc.msg}).") from None
    except RecursionError:
        raise InvalidInput(f"{source} is nested more than {MAX_DEPTH} levels deep.") from None
    except ValueError as exc:  # int digits limit, NaN, 1e999
        raise InvalidInput(f"{source} is not valid JSON ({excerpt(str(exc), 80)}).") from None
    _check_depth(data, source)
    return data


def _check_depth(data: Any, source: str) -> None:
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict | list):
            if depth > MAX_DEPTH:
                raise InvalidInput(f"{source} is nested more than {MAX_DEPTH} levels deep.")
            stack.extend((v, depth + 1) for v in (value.values() if isinstance(value, dict) else value))


# ---------------------------------------------------------------- YAML


def _loader(source: str) -> Any:
    import yaml

    base = getattr(yaml, "CSafeLoader", None) or yaml.SafeLoader

    class Loader(base):  # type: ignore[misc, valid-type]
        """The safe loader: plain types only, duplicate keys refused, timestamps left as text."""

        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            seen: set[tuple[str, str]] = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                if not isinstance(key_node, yaml.ScalarNode):
                    raise InvalidInput(f"{source} line {key_node.start_mark.line + 1}: a key must be plain text.")
                key = (key_node.tag, key_node.value)
                if key in seen:
                    raise InvalidInput(
                        f"{source} line {key_node.start_mark.line + 1}: the key {excerpt(key_node.value)} "
                        "is given twice in one mapping."
                    )
                seen.add(key)
            return super().construct_mapping(node, deep=deep)

    Loader.yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    return Loader


def load_yaml(text: str, *, source: str) -> Any:
    """YAML, checked as a graph (tags, cycles, depth, expanded size) before anything is built."""
    import yaml

    try:
        loader = _loader(source)(strip_bom(text))
    except UnicodeError:
        raise InvalidInput(f"{source} is not valid UTF-8 text.") from None
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_graph(node, source)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "not YAML or JSON"
        raise InvalidInput(f"{source} is not valid YAML or JSON{where} ({excerpt(str(problem), 80)}).") from None
    except RecursionError:
        raise InvalidInput(f"{source} is nested more than {MAX_DEPTH} levels deep.") from None
    finally:
        loader.dispose()


def _children(node: Any) -> list[Any]:
    import yaml

    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def _check_graph(root: Any, source: str) -> None:
    """Refuse unknown tags, recursive aliases, depth past MAX_DEPTH and more than MAX_NODES values
    once aliases are expanded (counted per node once, so the check is linear in the text)."""
    size: dict[int, int] = {}
    height: dict[int, int] = {}  # levels below and including a node, aliases followed
    on_path: set[int] = set()
    stack: list[tuple[Any, int, bool]] = [(root, 1, False)]
    while stack:
        node, depth, done = stack.pop()
        key = id(node)
        if done:
            on_path.discard(key)
            size[key] = 1 + sum(size[id(c)] for c in _children(node))
            height[key] = 1 + max((height[id(c)] for c in _children(node)), default=0)
            if size[key] > MAX_NODES:
                raise InvalidInput(
                    f"{source} expands to more than {MAX_NODES:,} values (aliases counted); split it into "
                    "smaller files."
                )
            continue
        if key in size:  # met before, through an alias: its depth here counts too
            if depth + height[key] - 1 > MAX_DEPTH:
                raise InvalidInput(f"{source} is nested more than {MAX_DEPTH} levels deep.")
            continue
        line = node.start_mark.line + 1
        if key in on_path:
            raise InvalidInput(f"{source} line {line}: an alias refers to a value that contains it.")
        if depth > MAX_DEPTH:
            raise InvalidInput(f"{source} is nested more than {MAX_DEPTH} levels deep.")
        if node.tag not in _YAML_TAGS:
            tag = node.tag.replace("tag:yaml.org,2002:", "!!")
            raise InvalidInput(
                f"{source} line {line}: the YAML tag {excerpt(tag)} is not accepted "
                "(only plain text, numbers, booleans, null, lists and mappings)."
            )
        on_path.add(key)
        stack.append((node, depth, True))
        stack.extend((c, depth + 1, False) for c in _children(node))  # met ones: their depth is checked
