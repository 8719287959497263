"""Synthesis products: what the LLM is asked to write from a user's timeline.

A product is one module in this package defining a :class:`Product` subclass decorated with
``@register_product``; the package imports every module in it on first use, so adding a
product is one file here plus its versioned prompt in ``humanllm_ray/prompts/``. A product
says

* which synthesis requests a timeline yields (:meth:`Product.requests`),
* the JSON schema of a reply (:meth:`Product.schema`, the *published* schema downstream
  stages may rely on),
* how a valid reply is cleaned (:meth:`Product.postprocess`: names -> placeholders),
* how the QC stage checks it: rule checks and the judge's product-specific criteria
  (or, with ``judged = False``, rule checks only).

Products written from a user's posts as a whole (persona, profile, life stories, writing
style) subclass :class:`TimelineProduct`; products made per post (social QA, post tags)
subclass :class:`Product` directly.

Bounds: :meth:`Product.schema` keeps the paper's nominal bounds (a profile of up to 400
words, up to 20 life stories); what the engine is asked for is that schema fitted to
``synth.max_new_tokens`` x ``synth.chars_per_token`` (:meth:`Product.request_schema`). The
embedded tiny model runs at 96 tokens x 1.0, so it gets a sliver of each product (one
short story, a ~80-character profile); a real model at e.g. 2048 tokens x 3.5 gets the
nominal bounds. A QC word minimum the budget cannot hold is not applied
(:meth:`Product.min_words`).
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import re
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple, Type

from ...llm.schema import TEXT_KIND, fit_to_budget, text_capacity
from ...prompts import PromptTemplate, load_prompt
from ..budget import PromptBudget, fit_text, largest_fitting
from ..names import find_names, replace_names

_WORD = re.compile(r"[A-Za-z0-9']+")
CHARS_PER_WORD = 6  # English averages ~6 characters a word with its space
# When a reply's budget cannot hold a product's nominal minimum (qc.min_words) at that
# density, the minimum cannot be met and is not applied: only this floor remains.
SHORT_BUDGET_MIN_WORDS = 3


def count_words(text: str) -> int:
    return len(_WORD.findall(text))


def parse_provenance(row: Dict[str, Any]) -> Dict[str, Any]:
    raw = row.get("provenance")
    if isinstance(raw, dict):
        return raw
    try:
        value = json.loads(raw or "{}")
    except (TypeError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


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
    judged: bool = True  # False: QC applies the rule checks only (the item is itself a judgement)

    @property
    def prompt(self) -> PromptTemplate:
        return load_prompt(self.prompt_version)

    def schema(self) -> Dict[str, Any]:
        """The published schema of a reply (nominal field bounds)."""
        raise NotImplementedError

    def request_schema(self, cfg: Any) -> Dict[str, Any]:
        """The schema asked of the engine: text fields shrunk to fit synth.max_new_tokens."""
        return fit_to_budget(self.schema(), cfg.synth.max_new_tokens, cfg.synth.chars_per_token)

    def budget_words(self, max_new_tokens: int, chars_per_token: float) -> int:
        """Words a reply fitted to this budget holds at ordinary English density."""
        fitted = fit_to_budget(self.schema(), int(max_new_tokens), float(chars_per_token))
        return text_capacity(fitted) // CHARS_PER_WORD

    def min_words(self, qc: Any, budget: Optional[Tuple[int, float]] = None) -> int:
        """``qc.min_words[name]``, unless the generation budget (max_new_tokens,
        chars_per_token) cannot hold that many words: a minimum the model could not meet
        says nothing about quality, so only SHORT_BUDGET_MIN_WORDS remains. The paper's
        100-word profile minimum binds a real model (1024 tokens hold ~168 words even at
        1 character a token); the tiny model's 96-token profile (~13 words) needs 3."""
        nominal = int(qc.min_words.get(self.name, 1))
        if budget is None:
            return nominal
        try:
            holds = self.budget_words(*budget)
        except ValueError:  # a budget too small for the skeleton: leave the bound alone
            return nominal
        return nominal if holds >= nominal else min(nominal, SHORT_BUDGET_MIN_WORDS)

    @staticmethod
    def row_budget(row: Dict[str, Any]) -> Optional[Tuple[int, float]]:
        """The budget an item was generated under, from its provenance (None if unknown)."""
        prov = parse_provenance(row)
        if not prov.get("max_new_tokens"):
            return None
        return int(prov["max_new_tokens"]), float(prov.get("chars_per_token") or 1.0)

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
        min_words = self.min_words(qc, self.row_budget(row))
        if max_words is not None and words > max_words:
            out.append(("rule_too_long", f"{words} words > {max_words}"))
        if words < min_words:
            lowered = min_words < int(qc.min_words.get(self.name, 1))
            note = " (qc.min_words does not fit the generation budget: floor applied)" if lowered else ""
            out.append(("rule_too_short", f"{words} words < {min_words}{note}"))
        names = [n for t in texts.values() for n in find_names(t)]
        if names:
            out.append(("rule_raw_name", f"names left in text: {names[:5]}"))
        return out


class TimelineProduct(Product):
    """A product written from a user's posts as a whole: one item per user (``{user}:{name}``).

    The prompt shows up to ``synth.max_posts_per_persona`` of the user's posts, oldest
    first, as many as fit the model's context (if not even one does, that one is cut); QC
    requires ``qc.min_posts_for_profile`` of them (``rule_too_few_posts``). A subclass gives
    its schema, prompt and :meth:`prompt_values` (bounds to state in the prompt, from the
    fitted schema).
    """

    def prompt_values(self, cfg: Any) -> Dict[str, Any]:
        """Template values besides n_posts, platform and posts."""
        return {}

    def requests(self, timeline: Dict[str, Any], cfg: Any, budget: PromptBudget) -> List[ProductRequest]:
        records = [r for r in timeline["records"] if (r.get("text") or "").strip()]
        records = records[: cfg.synth.max_posts_per_persona]
        if not records:
            return []
        values = self.prompt_values(cfg)

        def build(text: str, n_posts: int):
            return self.prompt.render(n_posts=n_posts, platform=timeline["platform"], posts=text, **values)

        def shown(k: int):
            text, recs = render_records(records[:k], cfg.synth.max_chars_per_post, budget.max_source_chars)
            return text, recs, build(text, len(recs))

        # As many posts as fit the model's context; if not even one does, cut that one.
        k = largest_fitting(len(records), lambda k: budget.fits(shown(k)[2]))
        if k > 0:
            text, recs, messages = shown(k)
        else:
            text, recs, _ = shown(1)
            text, messages = fit_text(text, lambda t: build(t, 1), budget)
        return [ProductRequest(f"{timeline['user_id']}:{self.name}", recs, text, messages)]

    def rule_violations(self, payload: Dict[str, Any], row: Dict[str, Any], qc: Any) -> List[Tuple[str, str]]:
        out = super().rule_violations(payload, row, qc)
        n_posts = len(row.get("source_record_ids") or [])
        if n_posts < qc.min_posts_for_profile:
            out.append(("rule_too_few_posts", f"{n_posts} source posts < {qc.min_posts_for_profile}"))
        return out


def word_bounds(product: Product, cfg: Any, nominal_max: int) -> Tuple[int, int]:
    """(min, max) words to ask for in a prompt: QC's minimum under this budget, and the
    nominal maximum or what the fitted schema's characters hold, whichever is smaller."""
    holds = max(1, text_capacity(product.request_schema(cfg)) // CHARS_PER_WORD)
    lo = min(holds, product.min_words(cfg.qc, (cfg.synth.max_new_tokens, cfg.synth.chars_per_token)))
    return lo, max(lo, min(nominal_max, holds))


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
