"""JSON schemas that even a random tiny model completes, and reply checking.

Why this module exists (measured, see STACK-NOTES "Structured output"): with grammar-
constrained decoding a reply can still be cut off by ``max_new_tokens`` inside an
unbounded string. So every free-text field here is a *bounded* string over a printable
ASCII alphabet, and :func:`fit_to_budget` shrinks the bounds until the longest reply the
schema allows fits the token budget. Every generated token carries at least one character,
so with ``chars_per_token=1`` a grammar-following engine always finishes its JSON.

Two renderings of the same constraint:

* the *published* schema (what :func:`check_reply` validates with ``jsonschema``):
  ``pattern: ^[first][rest]*$`` + ``maxLength`` — a linear-time regex, no catastrophic
  backtracking on long invalid replies;
* the *grammar* schema (what engines hand to xgrammar / vLLM): the same language written as
  bounded repetitions, because xgrammar ignores ``maxLength`` when a ``pattern`` is present
  and rejects single repetitions ``{0,n}`` above ~128. :func:`grammar_schema` rewrites.

A reply may also hold one level of *lists* (:func:`list_field`: an array of closed objects
whose fields are bounded text, enums, booleans or bounded integers; ``minItems`` /
``maxItems`` are honoured by xgrammar). :func:`fit_to_budget` fits a list by keeping its
items whole and lowering ``maxItems`` — fewer complete items rather than many stubs — and
shrinks the item's text fields only when not even ``minItems`` complete items fit.
"""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any, Dict, List, Optional, Tuple

# Letters, digits and everyday punctuation: no quotes or backslashes (no JSON escapes),
# no control characters. A field must start with a letter or digit (no leading spaces).
TEXT_FIRST = "A-Za-z0-9"
TEXT_REST = "A-Za-z0-9 ,.;:'!?()/&%-"
TEXT_PATTERN = f"^[{TEXT_FIRST}][{TEXT_REST}]*$"
TEXT_KIND = "humanllm_text"  # marks our bounded text fields inside a schema
LIST_KIND = "humanllm_list"  # marks a bounded list of closed objects (see list_field)

# xgrammar compiles {0,n} only up to about this n (measured: 128 ok, 200 fails).
_MAX_SINGLE_REPEAT = 100

# JSON separators every engine is asked to use (compact: fewer tokens, predictable size).
SEPARATORS = (",", ":")


def text_field(max_chars: int, description: str = "") -> Dict[str, Any]:
    """A bounded free-text field (1..max_chars characters of TEXT_REST)."""
    if max_chars < 1:
        raise ValueError("max_chars must be >= 1")
    field: Dict[str, Any] = {
        "type": "string",
        "pattern": TEXT_PATTERN,
        "minLength": 1,
        "maxLength": int(max_chars),
        "x-kind": TEXT_KIND,
    }
    if description:
        field["description"] = description
    return field


def list_field(item_properties: Dict[str, Any], max_items: int, title: str, min_items: int = 1, description: str = "") -> Dict[str, Any]:
    """A list of ``min_items..max_items`` closed objects (fields: text_field, enum, boolean,
    bounded integer; no nested lists)."""
    if not 0 <= min_items <= max_items or max_items < 1:
        raise ValueError(f"list_field {title!r}: need 0 <= min_items <= max_items, max_items >= 1")
    for k, v in item_properties.items():
        if v.get("type") == "array":
            raise ValueError(f"list_field {title!r}: nested list {k!r} is not supported")
    field: Dict[str, Any] = {
        "type": "array",
        "items": object_schema(item_properties, title=title),
        "minItems": int(min_items),
        "maxItems": int(max_items),
        "x-kind": LIST_KIND,
    }
    if description:
        field["description"] = description
    return field


def object_schema(properties: Dict[str, Any], title: str) -> Dict[str, Any]:
    """A closed object: every property required, nothing else allowed, keys in this order."""
    return {
        "title": title,
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


def _text_fields(schema: Dict[str, Any]) -> List[str]:
    return [k for k, v in schema.get("properties", {}).items() if v.get("x-kind") == TEXT_KIND]


def _list_fields(schema: Dict[str, Any]) -> List[str]:
    return [k for k, v in schema.get("properties", {}).items() if v.get("x-kind") == LIST_KIND]


def _longest_value(prop: Dict[str, Any]) -> Any:
    """The longest JSON value a non-text property can take (for sizing the skeleton); a
    list counts as empty here, its items are budgeted like text."""
    if prop.get("x-kind") == LIST_KIND:
        return []
    if "enum" in prop:
        return max(prop["enum"], key=lambda v: len(json.dumps(v)))
    t = prop.get("type")
    if t == "boolean":
        return False
    if t == "integer":
        lo, hi = prop.get("minimum", -(10**9)), prop.get("maximum", 10**9)
        return max((lo, hi), key=lambda v: len(str(v)))
    if t == "string":
        return ""
    raise ValueError(f"cannot size property {prop!r}: use text_field, enum, boolean or bounded integer")


def skeleton_chars(schema: Dict[str, Any]) -> int:
    """Characters of the reply with every text field empty, every list empty and every other
    field at its longest."""
    props = schema["properties"]
    sample = {k: ("" if k in _text_fields(schema) else _longest_value(v)) for k, v in props.items()}
    return len(json.dumps(sample, separators=SEPARATORS, ensure_ascii=False))


def _item_text(item_schema: Dict[str, Any]) -> int:
    return sum(int(item_schema["properties"][k]["maxLength"]) for k in _text_fields(item_schema))


def _list_chars(prop: Dict[str, Any], n_items: int, item_text: int) -> int:
    """Characters inside a list's brackets: n items of item_text characters of text each."""
    if n_items <= 0:
        return 0
    return n_items * (skeleton_chars(prop["items"]) + item_text) + (n_items - 1)


def _list_min_chars(prop: Dict[str, Any]) -> int:
    """The least a list needs: minItems items with one character per text field."""
    return _list_chars(prop, int(prop.get("minItems", 0)), len(_text_fields(prop["items"])))


def _fit_list(prop: Dict[str, Any], share: int) -> None:
    """Fit a list into ``share`` characters: as many whole items as fit (at least minItems);
    only when minItems whole items do not fit are the item's text fields shrunk."""
    item = prop["items"]
    nominal_text = _item_text(item)
    min_items, max_items = int(prop.get("minItems", 0)), int(prop["maxItems"])
    whole = max((n for n in range(max_items + 1) if _list_chars(prop, n, nominal_text) <= share), default=0)
    if whole >= max(1, min_items):
        prop["maxItems"] = whole
        return
    n = max(1, min_items)
    per_item = (share - (n - 1)) // n - skeleton_chars(item)
    fields = _text_fields(item)
    if per_item < len(fields):
        raise ValueError(f"list {item.get('title', '?')!r}: {share} characters cannot hold {n} item(s)")
    for k in fields:
        nominal = int(item["properties"][k]["maxLength"])
        item["properties"][k]["maxLength"] = max(1, min(nominal, int(per_item * nominal / nominal_text)))
    prop["maxItems"] = n


def text_capacity(schema: Dict[str, Any]) -> int:
    """Characters of free text the schema's longest reply holds (lists at maxItems)."""
    props = schema["properties"]
    total = sum(int(props[k]["maxLength"]) for k in _text_fields(schema))
    return total + sum(int(props[k]["maxItems"]) * _item_text(props[k]["items"]) for k in _list_fields(schema))


def fit_to_budget(schema: Dict[str, Any], max_new_tokens: int, chars_per_token: float = 1.0) -> Dict[str, Any]:
    """A copy of ``schema`` whose text fields (and lists) are shortened so any reply fits the
    token budget.

    The characters left after the skeleton (and one token for end-of-sequence) are shared
    among text fields and lists in proportion to their nominal size (a text field's
    ``maxLength``; a list's characters at ``maxItems``), never above it; a list then keeps
    as many whole items as its share holds (see :func:`_fit_list`).
    ``chars_per_token`` > 1 trades the completion guarantee for longer fields (real models
    average ~3.5 characters per token; a random model can emit one character per token).
    """
    out = copy.deepcopy(schema)
    fields = _text_fields(out)
    lists = _list_fields(out)
    if not fields and not lists:
        return out
    props = out["properties"]
    available = int((max_new_tokens - 1) * chars_per_token) - skeleton_chars(out)
    nominal = {k: int(props[k]["maxLength"]) for k in fields}
    nominal.update({k: _list_chars(props[k], int(props[k]["maxItems"]), _item_text(props[k]["items"])) for k in lists})
    if available < len(fields) + sum(_list_min_chars(props[k]) for k in lists):
        raise ValueError(
            f"max_new_tokens={max_new_tokens} cannot hold a {out.get('title', 'reply')} reply: "
            f"its JSON skeleton alone needs {skeleton_chars(out)} characters"
        )
    total_nominal = sum(nominal.values())
    if total_nominal <= available:
        return out
    for k in fields:
        props[k]["maxLength"] = max(1, min(nominal[k], int(available * nominal[k] / total_nominal)))
    for k in lists:
        share = max(_list_min_chars(props[k]), int(available * nominal[k] / total_nominal))
        _fit_list(props[k], share)
    return out


def _bounded_pattern(max_chars: int) -> str:
    """TEXT_PATTERN limited to max_chars, as nested bounded repeats xgrammar can compile."""
    rest = max_chars - 1
    cls = f"[{TEXT_REST}]"
    if rest <= _MAX_SINGLE_REPEAT:
        return f"^[{TEXT_FIRST}]{cls}{{0,{rest}}}$"
    groups, remainder = divmod(rest, _MAX_SINGLE_REPEAT)
    tail = f"{cls}{{0,{remainder}}}" if remainder else ""
    return f"^[{TEXT_FIRST}](?:{cls}{{0,{_MAX_SINGLE_REPEAT}}}){{0,{groups}}}{tail}$"


def grammar_schema(schema: Dict[str, Any]) -> Dict[str, Any]:
    """The same schema with length-bounded text fields written as grammar-friendly patterns
    (inside list items too)."""
    out = copy.deepcopy(schema)
    for k in _text_fields(out):
        prop = out["properties"][k]
        prop["pattern"] = _bounded_pattern(int(prop.pop("maxLength")))
        prop.pop("minLength", None)
        prop.pop("x-kind", None)
    for k in _list_fields(out):
        prop = out["properties"][k]
        prop["items"] = grammar_schema(prop["items"])
        prop.pop("x-kind", None)
    return out


def schema_hash(schema: Optional[Dict[str, Any]]) -> str:
    if schema is None:
        return "none"
    return hashlib.sha256(json.dumps(schema, sort_keys=True).encode()).hexdigest()[:16]


# Reply checking ------------------------------------------------------------------------

UNPARSED = "unparsed_json"
SCHEMA_INVALID = "schema_invalid"
ENGINE_ERROR = "engine_error"

_VALIDATORS: Dict[str, Any] = {}


def _validator(schema: Dict[str, Any]):
    key = schema_hash(schema)
    v = _VALIDATORS.get(key)
    if v is None:
        import jsonschema

        cls = jsonschema.validators.validator_for(schema)
        cls.check_schema(schema)
        v = _VALIDATORS[key] = cls(schema)
    return v


def validate(obj: Any, schema: Dict[str, Any]) -> Optional[str]:
    """None if obj satisfies schema, else a one-line description of the first error."""
    errors = sorted(_validator(schema).iter_errors(obj), key=lambda e: list(e.path))
    if not errors:
        return None
    e = errors[0]
    where = "/".join(str(p) for p in e.path) or "(root)"
    return f"{where}: {e.message}"[:500]


def parse_json_reply(text: str) -> Tuple[Any, Optional[str]]:
    """Parse a reply as one JSON value. Tolerates surrounding whitespace and a Markdown
    code fence (servers without structured output often add one), nothing else."""
    s = text.strip()
    if s.startswith("```"):
        s = s.split("\n", 1)[1] if "\n" in s else ""
        if s.rstrip().endswith("```"):
            s = s.rstrip()[:-3]
    try:
        return json.loads(s), None
    except (json.JSONDecodeError, ValueError) as exc:
        return None, f"{type(exc).__name__}: {exc}"[:300]


def check_reply(text: str, schema: Dict[str, Any]) -> Tuple[Any, Optional[str], str]:
    """(object, None, "") for a valid reply, else (None, reason code, detail)."""
    obj, err = parse_json_reply(text)
    if err is not None:
        return None, UNPARSED, err
    problem = validate(obj, schema)
    if problem is not None:
        return None, SCHEMA_INVALID, problem
    return obj, None, ""


def dumps(obj: Any) -> str:
    """Canonical JSON text for a payload (compact, UTF-8, key order as produced)."""
    return json.dumps(obj, separators=SEPARATORS, ensure_ascii=False)
