"""Strict ``${name}`` templates: every placeholder filled, every value used, nothing left over.

Triton's own tooling (``fill_template.py``) leaves an unfilled ``${x}`` in place and the backend
later reads it as a literal string; here that is an error at generation time, naming the value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
# Anything that still looks like a placeholder after rendering: a malformed one (``${a b}``,
# ``${}``) or one smuggled in through a value.
LEFTOVER = re.compile(r"\$\{[^}]*\}?")


class TemplateError(ValueError):
    """A template and its values do not match; the message names the values and the template."""


@dataclass(frozen=True)
class Rendered:
    name: str
    text: str
    used: frozenset[str]


def placeholders(text: str) -> frozenset[str]:
    return frozenset(PLACEHOLDER.findall(text))


def render(name: str, text: str, values: Mapping[str, str]) -> Rendered:
    """Fill one template; fails on a placeholder with no value or a leftover ``${``."""
    wanted = placeholders(text)
    missing = sorted(wanted - set(values))
    if missing:
        raise TemplateError(f"template {name}: missing values {', '.join(missing)}")
    result = PLACEHOLDER.sub(lambda m: values[m.group(1)], text)
    leftover = LEFTOVER.search(result)
    if leftover:
        line = result.count("\n", 0, leftover.start()) + 1
        raise TemplateError(f"template {name}: line {line} still holds {leftover.group(0)!r} after rendering")
    return Rendered(name=name, text=result, used=wanted)


def render_all(templates: Mapping[str, str], values: Mapping[str, str]) -> dict[str, str]:
    """Fill a set of templates from one set of values; a value no template uses is an error too.

    An unused value is usually a renamed placeholder: the deployment believes it set something
    that no config reads any more.
    """
    rendered = {name: render(name, text, values) for name, text in templates.items()}
    used = frozenset().union(*(r.used for r in rendered.values())) if rendered else frozenset()
    unknown = sorted(set(values) - used)
    if unknown:
        raise TemplateError(f"unknown values (no template uses them): {', '.join(unknown)}")
    return {name: r.text for name, r in rendered.items()}
