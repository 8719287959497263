"""LLM-judge scores for the in-domain generation tasks (social QA, profile generation).

Optional (``eval.judge=true``; off by default: on CPU it costs a generation per item per
model plus a judge call). Each evaluated model answers up to ``eval.judge_max_items``
held-out examples per task in ``eval.judge_tasks`` (greedy, ``eval.judge_answer_max_new_tokens``);
the judge then compares each answer with the reference — the person's real answer (social
QA) or the profile/persona synthesized and QC-passed from their posts (profile generation)
— and replies, schema-constrained, ``{reason, consistency: 1-5, persona_fit: 1-5}``.

The judge is the same engine the QC stage uses (:func:`humanllm_ray.llm.build_engine`:
``synth.engine`` = hf | vllm | openai, with ``qc.temperature`` / ``qc.top_p``), held in
this process; the JSON schema is sized to ``eval.judge_max_new_tokens`` the way QC's is
(:func:`humanllm_ray.llm.schema.fit_to_budget`) so even a tiny model's reply parses. A reply
that never validates leaves the item unscored (counted as ``unparsed``), never guessed.
When the judge is the untrained embedded tiny model its scores are noise; the report says so.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

from ..llm.schema import check_reply, fit_to_budget, object_schema, text_field
from ..prompts import parse_template

log = logging.getLogger("humanllm")

JUDGE_VERSION = "eval_judge.v1"
JUDGE_TEMPLATE = parse_template(
    "eval_judge",
    JUDGE_VERSION,
    """[system]
You are a strict evaluator of how well a model imitates one specific real person. You compare the model's answer with the reference and score it honestly.
[user]
Task: $task

What the model was given:
$context

Reference ($reference_kind):
$reference

The model's answer:
$answer

Score the model's answer against the reference:
- reason: one short sentence on the main difference (or "no issues").
- consistency (1 to 5): does the answer agree with the reference in substance (the same action, emotion, thought or facts)? 1 = contradicts it or is unrelated, 5 = says the same.
- persona_fit (1 to 5): does it sound like this particular person, in content and voice? 1 = generic or out of character, 5 = unmistakably them.

Answer with JSON only, in this form: {"reason": "...", "consistency": 1-5, "persona_fit": 1-5}
""",
)

JUDGE_SCHEMA = object_schema(
    {
        "reason": text_field(160, "one short sentence on the main difference"),
        "consistency": {"type": "integer", "minimum": 1, "maximum": 5},
        "persona_fit": {"type": "integer", "minimum": 1, "maximum": 5},
    },
    title="eval_judge",
)
DIMENSIONS = ("consistency", "persona_fit")

TASK_TEXT = {
    "social_qa": ("answer a question about a social scenario as this person would", "what the person actually did, felt or thought"),
    "profile_generation": ("describe this person (persona, profile or future life stories) from what they wrote", "the description built and checked from their posts"),
}


@dataclass
class JudgeItem:
    position: int  # example position in the evaluate stage
    task: str
    context: str  # the prompt the model saw (user turn)
    reference: str
    answer: str


def clip(text: str, max_chars: int) -> str:
    text = (text or "").strip()
    return text if len(text) <= max_chars else text[:max_chars].rsplit(" ", 1)[0] + " ..."


def judge_messages(item: JudgeItem, max_chars: int = 2000) -> List[Dict[str, str]]:
    task, kind = TASK_TEXT.get(item.task, (item.task.replace("_", " "), "reference answer"))
    return JUDGE_TEMPLATE.render(
        task=task,
        context=clip(item.context, max_chars),
        reference_kind=kind,
        reference=clip(item.reference, max_chars // 2),
        answer=clip(item.answer, max_chars // 2) or "(empty)",
    )


class EngineHolder:
    """Builds the judge engine on first use (once per stage run) and closes it."""

    def __init__(self, cfg: Any):
        self.cfg = cfg
        self._engine = None

    @property
    def engine(self):
        if self._engine is None:
            from ..llm import build_engine

            self._engine = build_engine(self.cfg, fault_rate=0.0)
            log.info("evaluate: judge engine %s", self._engine.describe())
        return self._engine

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()
            self._engine = None


def identity(cfg: Any) -> str:
    from ..llm import engine_identity

    return engine_identity(cfg, 0.0)


def is_noise_judge(cfg: Any) -> bool:
    """The untrained embedded tiny model as judge (its verdicts carry no signal)."""
    return cfg.model.base == "tiny" and cfg.synth.engine in ("hf", "vllm")


def ask(engine, prompts: List[List[Dict[str, str]]], schema: Dict[str, Any], cfg: Any, seed: int, max_new_tokens: int) -> List[Any]:
    """Schema-constrained replies, parsed and validated; None where a reply never validates.
    Greedy judges (qc.temperature 0) get one attempt; sampling judges qc.max_retries more."""
    results: List[Any] = [None] * len(prompts)
    pending = list(range(len(prompts)))
    attempts = 1 + (int(cfg.qc.max_retries) if cfg.qc.temperature > 0 else 0)
    for attempt in range(attempts):
        if not pending:
            break
        replies = engine.generate(
            [prompts[i] for i in pending],
            schema=schema,
            max_new_tokens=max_new_tokens,
            temperature=cfg.qc.temperature,
            top_p=cfg.qc.top_p,
            seeds=[seed + 7919 * attempt + i for i in pending],
        )
        still = []
        for i, reply in zip(pending, replies):
            obj, reason, _detail = check_reply(reply or "", schema)
            if reason is None:
                results[i] = obj
            else:
                still.append(i)
        pending = still
    return results


def judge_items(holder: EngineHolder, items: Sequence[JudgeItem], cfg: Any) -> List[Optional[Dict[str, Any]]]:
    """One judge verdict per item (None: unparsed)."""
    if not items:
        return []
    schema = fit_to_budget(JUDGE_SCHEMA, cfg.eval.judge_max_new_tokens, cfg.synth.chars_per_token)
    prompts = [judge_messages(i, cfg.eval.judge_max_context_chars) for i in items]
    return ask(holder.engine, prompts, schema, cfg, cfg.run.seed, cfg.eval.judge_max_new_tokens)


def reference_for(example: Dict[str, Any]) -> Optional[str]:
    """The reference a judged task compares with: its gold assistant turn."""
    gold = next((m["content"] for m in reversed(example.get("messages") or []) if m["role"] == "assistant"), None)
    return gold.strip() if gold and gold.strip() else None


def prompt_of(example: Dict[str, Any]) -> List[Dict[str, str]]:
    msgs = list(example.get("messages") or [])
    while msgs and msgs[-1]["role"] == "assistant":
        msgs = msgs[:-1]
    return [{"role": m["role"], "content": m["content"]} for m in msgs]


def user_text(example: Dict[str, Any]) -> str:
    return next((m["content"] for m in reversed(example.get("messages") or []) if m["role"] == "user"), "")
