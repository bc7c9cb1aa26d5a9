"""Values of templated operator fields, whether the DAG renders native objects or text.

With ``render_template_as_native_obj`` a param arrives as a bool, list or None; without it (or
when an operator is used in another DAG) the same value arrives as ``"True"``, ``"['a']"`` or ``"None"``.
"""

from __future__ import annotations

import ast
from typing import Any


def rendered_bool(value: Any) -> bool:
    """A templated flag arrives as a bool with native rendering and as text without it."""
    return value if isinstance(value, bool) else str(value).strip().lower() in ("true", "1", "yes")


def rendered_optional(value: Any) -> Any:
    """A templated optional value rendered without native objects arrives as ``"None"`` or ``""``."""
    return None if value is None or str(value).strip() in ("", "None") else value


def rendered_list(value: Any) -> Any:
    """``"['a', 'b']"`` (a list rendered as text) → ``['a', 'b']``; anything else unchanged."""
    if isinstance(value, str) and value.strip().startswith("["):
        return ast.literal_eval(value.strip())
    return value
