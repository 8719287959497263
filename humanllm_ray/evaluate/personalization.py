"""Does the model use what it knows about the person? Personalization gain and style similarity.

**Personalization gain** (writing imitation, personalized commenting; ``eval.personalization_tasks``).
For each held-out example the person's real text (the assistant turn) is scored twice:

* *with*: the prompt exactly as the task builder made it (persona and/or the person's earlier
  posts or comments, then the stimulus and the instruction);
* *without*: the same conversation with the personal context cut out of the user turn by
  :func:`strip_personal_context`:

  1. leading persona and writing-style paragraphs (``"Persona: ...\\n\\n"``, ``"Writing style:
     ...\\n\\n"``, one paragraph each: their schemas allow no newline) are removed;
  2. a history block that opens with the builder's header — ``"Here is writing this person
     posted before:"`` (writing imitation) or ``"Comments this person wrote before:"``
     (commenting) — is removed up to the first paragraph that starts the stimulus: ``They
     bought "`` / ``Write their new post`` / ``They started a new post:`` (writing imitation),
     ``Another user posted:`` (commenting);
  3. the system turn (the generic "You are simulating one specific person..." instruction,
     which names nobody) and the assistant turn are kept verbatim.

  What is left is the minimal generic prompt: the topic, item or first half of the post (or
  the other user's post) and the instruction. An example whose user turn has neither a
  persona nor a known history block is *not strippable* and is left out of the gain (counted).

gain = loss_without - loss_with (nats per target token, ratio of sums), with a paired
bootstrap CI over examples (:func:`metrics.personalization_gain`). Positive: the profile and
history make the person's real words more likely.

**Style similarity** between a short greedy generation (from the *with* prompt,
``eval.style_max_new_tokens`` tokens) and the person's real text (its first
``eval.style_max_chars`` characters):

* ``char3``: cosine of character 3-gram count vectors (lowercased, whitespace collapsed);
* ``function_words``: cosine of the relative frequencies of :data:`FUNCTION_WORDS` (a fixed
  list of ~150 English function words — the classic stylometric signal, topic-independent).

Cheap and lexical: they measure surface style, not meaning. To read them, each generation is
also compared with the real text of *another* held-out user on the same task (the next one in
example order with a different user id): ``lift = sim(own) - sim(other)``, paired bootstrap CI.
A positive lift says the generation looks more like *this* person's writing than like someone
else's answering a similar prompt.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

PERSONA_PREFIX = "Persona: "
STYLE_PREFIX = "Writing style: "  # writing imitation, when synthesis made a writing_style
# task -> (history header, markers that open the stimulus paragraph after the history)
HISTORY_BLOCKS: Dict[str, Tuple[str, Tuple[str, ...]]] = {
    "writing_imitation": (
        "Here is writing this person posted before:",
        ('They bought "', "Write their new post", "They started a new post:"),
    ),
    "personalized_commenting": ("Comments this person wrote before:", ("Another user posted:",)),
}
STRIP_METHOD = (
    "without = the same target after a generic prompt: the user turn loses its leading 'Persona: ...' and "
    "'Writing style: ...' paragraphs "
    "and the history block (from the builder's header, e.g. 'Here is writing this person posted before:', to the "
    "paragraph that opens the stimulus, e.g. 'They started a new post:' / 'Another user posted:'); the system turn "
    "(generic, names no one) and the target are unchanged. gain = loss_without - loss_with."
)


def _strip_user_text(text: str) -> Optional[str]:
    out = text
    removed = False
    for prefix in (PERSONA_PREFIX, STYLE_PREFIX):
        if out.startswith(prefix):
            cut = out.find("\n\n")
            out = out[cut + 2 :] if cut >= 0 else ""
            removed = True
    for header, markers in HISTORY_BLOCKS.values():
        if not out.startswith(header):
            continue
        starts = [out.find("\n\n" + m, len(header)) for m in markers]
        starts = [s for s in starts if s >= 0]
        if not starts:
            return None  # a history block whose end we cannot find: do not guess
        out = out[min(starts) + 2 :]
        removed = True
        break
    if not removed or not out.strip():
        return None
    return out


def strip_personal_context(messages: Sequence[Dict[str, str]]) -> Optional[List[Dict[str, str]]]:
    """The conversation with persona/history removed from its (last) user turn, or None when
    there is nothing recognisable to remove (see the module docstring for the exact rule)."""
    msgs = [{"role": m["role"], "content": m["content"]} for m in messages]
    user = [i for i, m in enumerate(msgs) if m["role"] == "user"]
    if not user or not msgs or msgs[-1]["role"] != "assistant":
        return None
    i = user[-1]
    stripped = _strip_user_text(msgs[i]["content"])
    if stripped is None:
        return None
    msgs[i]["content"] = stripped
    return msgs


# --------------------------------------------------------------------------- style similarity

FUNCTION_WORDS = tuple(
    """a about above after again against all am an and any are as at be because been before being below
    between both but by can could did do does doing down during each few for from further had has have having
    he her here hers herself him himself his how i if in into is it its itself just me might more most must my
    myself no nor not now of off on once only or other ought our ours ourselves out over own same she should so
    some such than that the their theirs them themselves then there these they this those through to too under
    until up very was we were what when where which while who whom why will with would you your yours yourself
    yourselves also although anyway anything else even ever every however maybe much never nothing often perhaps
    quite rather really since something still though thus yet yes okay im ive dont cant wont didnt doesnt isnt
    thats theres lot lots""".split()
)
_FUNCTION_SET = frozenset(FUNCTION_WORDS)
_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")
_SPACE = re.compile(r"\s+")


def _cosine(a: Counter, b: Counter) -> Optional[float]:
    if not a or not b:
        return None
    dot = sum(v * b.get(k, 0) for k, v in a.items())
    na = math.sqrt(sum(v * v for v in a.values()))
    nb = math.sqrt(sum(v * v for v in b.values()))
    return float(dot / (na * nb)) if na and nb else None


def char_ngrams(text: str, n: int = 3) -> Counter:
    t = " " + _SPACE.sub(" ", text.lower()).strip() + " "
    return Counter(t[i : i + n] for i in range(len(t) - n + 1)) if len(t.strip()) else Counter()


def char_ngram_cosine(a: str, b: str, n: int = 3) -> Optional[float]:
    """Cosine similarity of character n-gram counts; None when either text is empty."""
    return _cosine(char_ngrams(a, n), char_ngrams(b, n))


def function_word_profile(text: str) -> Counter:
    words = [w.replace("'", "") for w in _WORD.findall(text.lower())]
    return Counter(w for w in words if w in _FUNCTION_SET)


def function_word_cosine(a: str, b: str) -> Optional[float]:
    """Cosine of function-word count vectors (the same as of relative frequencies: cosine
    ignores scale); None when either text has no function word."""
    return _cosine(function_word_profile(a), function_word_profile(b))


def style_scores(generated: str, real: str, max_chars: int = 600) -> Dict[str, Optional[float]]:
    real = (real or "")[:max_chars] if max_chars > 0 else (real or "")
    return {"char3": char_ngram_cosine(generated, real), "function_words": function_word_cosine(generated, real)}


def other_user_partner(indices: Sequence[int], users: Mapping[int, str]) -> Dict[int, Optional[int]]:
    """For each example position (of one task, in order), the next position in a cyclic scan
    whose user differs: the 'someone else' baseline for style similarity."""
    out: Dict[int, Optional[int]] = {}
    n = len(indices)
    for k, i in enumerate(indices):
        out[i] = None
        for step in range(1, n):
            j = indices[(k + step) % n]
            if users[j] != users[i]:
                out[i] = j
                break
    return out


def style_table(
    generations: Dict[int, str], reals: Dict[int, str], users: Dict[int, str], tasks: Dict[int, str], max_chars: int
) -> Dict[int, Dict[str, Any]]:
    """Per example position: own similarity, the other-user baseline, for both measures."""
    out: Dict[int, Dict[str, Any]] = {}
    by_task: Dict[str, List[int]] = {}
    for i in sorted(generations):
        by_task.setdefault(tasks[i], []).append(i)
    for _task, idx in by_task.items():
        partner = other_user_partner(idx, users)
        for i in idx:
            own = style_scores(generations[i], reals[i], max_chars)
            j = partner[i]
            other = style_scores(generations[i], reals[j], max_chars) if j is not None else {"char3": None, "function_words": None}
            out[i] = {"own": own, "other": other, "partner": j}
    return out
