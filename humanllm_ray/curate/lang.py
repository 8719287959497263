"""Language identification with langid.py, loaded lazily once per worker process.

The model and its tokenizer are langid's; only the scoring is done here, on the features a
text has. langid's own ``classify`` counts a text's byte n-grams into a dense vector of all
7,480 features and multiplies it by the whole 7,480 x 97 weight table, which numpy converts
from float32 to float64 on every call (uint32 x float32): ~6 MB of memory written and read per
text, whose few hundred non-zero features touch ~1% of the rows. That was ~40% of the CPU of
curate's record pass with its MinHash signatures (a profile of 9k bench records). Scoring the
non-zero rows only is the same sum of the same float64 products: on 45,012 texts of
bench/curate's corpus it gave the same label and the same probability, bit for bit, as
``LanguageIdentifier.classify``, 4.3x faster (bench/README.md, curate Round 27;
tests/test_lang.py checks the agreement).
"""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

_IDENTIFIER = None


def _identifier():
    global _IDENTIFIER
    if _IDENTIFIER is None:
        from langid.langid import LanguageIdentifier, model

        _IDENTIFIER = LanguageIdentifier.from_modelstring(model, norm_probs=True)
    return _IDENTIFIER


def feature_counts(ident, text: str) -> Tuple[np.ndarray, np.ndarray]:
    """(feature indices, counts as float64) of ``text``: langid's ``instance2fv`` (the same
    byte automaton, the same counts) without the dense vector. Not ``instance2fv`` plus
    ``np.flatnonzero``: its per-feature ``arr[index] += n`` on a numpy array made language id
    1.5x slower (6.07 s against 4.05 s on the 45,012 bench texts, the same results)."""
    nextmove, output = ident.tk_nextmove, ident.tk_output
    state = 0
    states: dict = {}
    for byte in text.encode("utf8"):
        state = nextmove[(state << 8) + byte]
        states[state] = states.get(state, 0) + 1
    counts: dict = {}
    for s, n in states.items():
        for index in output.get(s, ()):
            counts[index] = counts.get(index, 0) + n
    return (np.fromiter(counts.keys(), np.intp, len(counts)),
            np.fromiter(counts.values(), np.float64, len(counts)))


def classify_text(ident, text: str) -> Tuple[str, float]:
    """``ident.classify(text)`` (langid, ``norm_probs=True``) on the text's features only."""
    idx, counts = feature_counts(ident, text)
    # langid: log P(doc | class) = fv . nb_ptc + nb_pc, in float64; the zero features add 0
    pd = counts @ ident.nb_ptc[idx].astype(np.float64) + ident.nb_pc
    best = int(np.argmax(pd))
    # langid's norm_probs: P(class i) = 1 / sum_j exp(pd_j - pd_i); only the best one is used
    with np.errstate(over="ignore"):
        prob = float(1.0 / np.exp(pd - pd[best]).sum())
    return str(ident.nb_classes[best]), prob


def classify(text: str, max_chars: int = 2000) -> Tuple[Optional[str], float]:
    """(language code, probability) of text; (None, 0.0) when there is no text.

    The text is lower-cased first: langid's byte n-grams mistake ALL-CAPS English for other
    languages far more often than lower case."""
    t = (text or "").strip()
    if not t:
        return None, 0.0
    return classify_text(_identifier(), t[:max_chars].lower())
