"""``save_output(obj)``: what a notebook API returns, published from the kernel.

The value travels as a display message of its own MIME type, which the engine picks out of the
executed cells and checks against the contract's output schema. This module imports nothing
heavy: ``from nbplane import save_output`` stays cheap, and IPython is imported on first call.
"""

from __future__ import annotations

import math
import sys
from typing import Any

OUTPUT_MIMETYPE = "application/vnd.nbplane.output+json"
_PREVIEW_LIMIT = 2000


def save_output(obj: Any) -> None:
    """Save ``obj`` as the notebook's output: JSON data (dicts with string keys, lists,
    strings, numbers, booleans, None) and pydantic models, at any depth.

    Anything else raises ``TypeError`` naming its type and where it is, e.g. ``/rows/3``.
    Called more than once, the last value is the output.
    """
    data = to_json_data(obj)
    import json

    from IPython.display import display

    preview = json.dumps(data, ensure_ascii=False, indent=1)
    if len(preview) > _PREVIEW_LIMIT:
        preview = preview[:_PREVIEW_LIMIT] + "\n…"
    display({OUTPUT_MIMETYPE: data, "text/plain": preview}, raw=True)


def to_json_data(obj: Any) -> Any:
    """``obj`` as plain JSON data; pydantic models become ``model_dump(mode="json")``."""
    return _convert(obj, "", set())


def _convert(obj: Any, where: str, seen: set[int]) -> Any:
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        if not math.isfinite(obj):
            raise ValueError(f"save_output: {obj!r} at {where or '/'} is not valid JSON")
        return float(obj)
    pydantic = sys.modules.get("pydantic")
    if pydantic is not None and isinstance(obj, pydantic.BaseModel):
        return _convert(obj.model_dump(mode="json"), where, seen)
    if isinstance(obj, (dict, list, tuple)):
        if id(obj) in seen:
            raise ValueError(f"save_output: the value at {where or '/'} contains itself")
        seen.add(id(obj))
        try:
            if isinstance(obj, dict):
                converted: dict[str, Any] = {}
                for key, value in obj.items():
                    if not isinstance(key, str):
                        raise TypeError(
                            f"save_output: JSON object keys are strings; the key {key!r} at "
                            f"{where or '/'} is {_type_name(key)}"
                        )
                    converted[key] = _convert(value, f"{where}/{_escape(key)}", seen)
                return converted
            return [_convert(item, f"{where}/{index}", seen) for index, item in enumerate(obj)]
        finally:
            seen.discard(id(obj))
    hint = ""
    if hasattr(obj, "to_dict"):
        hint = " (convert it first, e.g. df.to_dict(orient='records'))"
    elif hasattr(obj, "item"):
        hint = " (convert it first, e.g. value.item())"
    raise TypeError(
        f"save_output: {_type_name(obj)} at {where or '/'} is not JSON-serializable{hint}; "
        "save dicts, lists, strings, numbers, booleans, None or pydantic models"
    )


def _type_name(obj: Any) -> str:
    cls = type(obj)
    return (
        cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    )


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")
