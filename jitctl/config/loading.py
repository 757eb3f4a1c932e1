"""Reading a config file: TOML in, a BrokerConfig out, or one message per problem.

Rules:
- A bad file is refused as a whole with one message per problem, each naming the file, the key
  path (``targets[1].address``) and what is wrong; the same message is never said twice.
- A `KeyProblem` names its own key (relative ones are appended to the table being validated).
- Every refusal is a ConfigError that points at docs/configuration.md.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from jitctl.config._model import KeyProblem
from jitctl.config.sections import BrokerConfig
from jitctl.errors import ConfigError

_TYPE_WORDS = {
    "string_type": "a string",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "list_type": "a list",
    "dict_type": "a table",
    "model_type": "a table",
    "model_attributes_type": "a table",
}


def _key_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part.startswith(("function-", "union[")) or part in ("str", "list[str]"):
            continue
        else:
            path += ("." if path else "") + part
    return path or "(top level)"


def _describe(error: Any) -> tuple[str, str]:
    loc = tuple(error["loc"])
    kind = error["type"]
    given = error.get("input")
    if kind == "missing":
        return _key_path(loc), "required key is missing"
    if kind == "extra_forbidden":
        return _key_path(loc), "unknown key"
    if kind in _TYPE_WORDS:
        return _key_path(loc), f"expected {_TYPE_WORDS[kind]}, got {type(given).__name__} {given!r}"
    if kind == "literal_error":
        return _key_path(loc), f"{given!r} is not allowed; {error['msg'].lower()}"
    if kind == "string_pattern_mismatch":
        return _key_path(loc), f"{given!r} may hold only letters, digits, '.', '_' and '-'"
    if kind == "value_error":
        cause = error.get("ctx", {}).get("error")
        if isinstance(cause, KeyProblem):
            if cause.relative and loc:
                return f"{_key_path(loc)}.{cause.key}", cause.problem
            return cause.key, cause.problem
        return _key_path(loc), str(cause) if cause else error["msg"]
    return _key_path(loc), error["msg"]


def parse_config(data: dict[str, Any], source: str) -> BrokerConfig:
    try:
        return BrokerConfig.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            key, problem = _describe(error)
            problems.append(f"{source}: {key}: {problem}")
        # With one union member per type, pydantic may report one key twice; say it once.
        problems = list(dict.fromkeys(problems))
        raise ConfigError.invalid(
            problems, "fix the keys above; docs/configuration.md documents every key"
        ) from None


def load_config(path: str | Path) -> BrokerConfig:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file", "check the path of the config file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}", "fix the syntax at that line") from None
    return parse_config(data, str(path))
