"""Synthesis products: what the LLM is asked to write from a user's timeline.

A product is one module in this package defining a :class:`Product` subclass decorated with
``@register_product``; the package imports every module in it on first use, so adding a
product is one file here plus its versioned prompt in ``humanllm_ray/prompts/``. A product
says

* which synthesis requests a timeline yields (:meth:`Product.requests`),
* the JSON schema of a reply (:meth:`Product.schema`, the *published* schema downstream
  stages may rely on),
* how a valid reply is cleaned (:meth:`Product.postprocess`: names -> placeholders),
* how the QC stage checks it: rule checks and the judge's product-specific criteria.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from dataclasses import dataclass
from typing import Any, Dict, List, Sequence, Tuple, Type

from ...llm.schema import TEXT_KIND, fit_to_budget
from ...prompts import PromptTemplate, load_prompt
from ..budget import PromptBudget
from ..names import find_names, replace_names

_WORD = re.compile(r"[A-Za-z0-9']+")


def count_words(text: str) -> int:
    return len(_WORD.findall(text))


@dataclass
class ProductRequest:
    """One synthesis request a product derives from a timeline (before keys and sampling)."""

    item_id: str
    source_records: List[Dict[str, Any]]  # the curated records the prompt shows
    source_text: str  # those records as rendered into the prompt (the judge re-reads it)
    messages: List[Dict[str, str]]


class Product:
    name: str = "?"
    prompt_version: str = "?"  # file stem in humanllm_ray/prompts, e.g. "persona.v1"
    # Judge criteria, filled into the judge prompt.
    grounded_rule: str = "is everything it says supported by the source posts?"
    leakage_rule: str = "always false for this kind of item."
    judge_checks_leakage: bool = False  # whether qc.reject_leakage applies to this product

    @property
    def prompt(self) -> PromptTemplate:
        return load_prompt(self.prompt_version)

    def schema(self) -> Dict[str, Any]:
        """The published schema of a reply (nominal field bounds)."""
        raise NotImplementedError

    def request_schema(self, cfg: Any) -> Dict[str, Any]:
        """The schema asked of the engine: text fields shrunk to fit synth.max_new_tokens."""
        return fit_to_budget(self.schema(), cfg.synth.max_new_tokens, cfg.synth.chars_per_token)

    def requests(self, timeline: Dict[str, Any], cfg: Any, budget: PromptBudget) -> List[ProductRequest]:
        """The requests for one curated timeline row (user_id, platform, records, ...), each
        prompt within ``budget`` (see :mod:`..budget`)."""
        raise NotImplementedError

    # -- replies -------------------------------------------------------------------------
    def text_fields(self, payload: Dict[str, Any]) -> Dict[str, str]:
        props = self.schema()["properties"]
        return {k: v for k, v in payload.items() if props.get(k, {}).get("x-kind") == TEXT_KIND and isinstance(v, str)}

    def postprocess(self, payload: Dict[str, Any]) -> Dict[str, Any]:
        """Names in generated text become PersonA, PersonB, ... (one mapping per item)."""
        return {**payload, **replace_names(self.text_fields(payload))}

    def render_for_judge(self, payload: Dict[str, Any]) -> str:
        return "\n".join(f"{k.replace('_', ' ').capitalize()}: {v}" for k, v in payload.items())

    # -- rule checks (QC, before the judge) ----------------------------------------------
    def rule_violations(self, payload: Dict[str, Any], row: Dict[str, Any], qc: Any) -> List[Tuple[str, str]]:
        """(reason code, detail) for each rule the item breaks; empty when it passes."""
        out: List[Tuple[str, str]] = []
        texts = self.text_fields(payload)
        words = sum(count_words(t) for t in texts.values())
        max_words = qc.max_words.get(self.name)
        min_words = qc.min_words.get(self.name, 1)
        if max_words is not None and words > max_words:
            out.append(("rule_too_long", f"{words} words > {max_words}"))
        if words < min_words:
            out.append(("rule_too_short", f"{words} words < {min_words}"))
        names = [n for t in texts.values() for n in find_names(t)]
        if names:
            out.append(("rule_raw_name", f"names left in text: {names[:5]}"))
        return out


# -- shared helpers for products --------------------------------------------------------


def qualified_posts(records: Sequence[Dict[str, Any]], min_chars: int) -> List[Dict[str, Any]]:
    """Records with enough text to build an item from (curate already dropped the junk)."""
    return [r for r in records if len((r.get("text") or "").strip()) >= min_chars]


def render_record(rec: Dict[str, Any], max_chars: int) -> str:
    """One record as the prompts show it: what it answers or reviews, its title, its text."""
    text = (rec.get("text") or "").strip()
    if len(text) > max_chars:
        text = text[:max_chars].rsplit(" ", 1)[0] + " ..."
    lines = []
    kind = rec.get("kind") or "post"
    context = (rec.get("context") or "").strip()
    if context:
        context = context[:300]
        label = {"review": "Review of", "comment": "In reply to"}.get(kind, "Posted in")
        lines.append(f"{label}: {context}")
    if rec.get("rating") is not None and kind == "review":
        lines.append(f"Rating: {rec['rating']:g} of 5")
    if (rec.get("title") or "").strip():
        lines.append(f"Title: {rec['title'].strip()}")
    lines.append(f"Text: {text}")
    return "\n".join(lines)


def render_records(records: Sequence[Dict[str, Any]], max_chars_per_post: int, max_total_chars: int) -> Tuple[str, List[Dict[str, Any]]]:
    """Numbered records up to a total character budget; returns (text, records shown)."""
    blocks, shown, total = [], [], 0
    for rec in records:
        block = f"[{len(shown) + 1}] ({rec.get('kind') or 'post'})\n" + render_record(rec, max_chars_per_post)
        if shown and total + len(block) > max_total_chars:
            break
        blocks.append(block)
        shown.append(rec)
        total += len(block) + 2
    return "\n\n".join(blocks), shown


# -- registry ----------------------------------------------------------------------------

_REGISTRY: Dict[str, Product] = {}
_DISCOVERED = False


def register_product(cls: Type[Product]) -> Type[Product]:
    if cls.name in _REGISTRY and type(_REGISTRY[cls.name]) is not cls:
        raise ValueError(f"product {cls.name!r} registered twice")
    _REGISTRY[cls.name] = cls()
    return cls


def _discover() -> None:
    global _DISCOVERED
    if _DISCOVERED:
        return
    for mod in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{mod.name}")
    _DISCOVERED = True


def get_product(name: str) -> Product:
    _discover()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown synthesis product {name!r}; registered: {sorted(_REGISTRY)}") from None


def available_products() -> List[str]:
    _discover()
    return sorted(_REGISTRY)
