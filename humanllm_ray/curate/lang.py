"""Language identification with langid.py, loaded lazily once per worker process."""

from __future__ import annotations

from typing import Optional, Tuple

_IDENTIFIER = None


def _identifier():
    global _IDENTIFIER
    if _IDENTIFIER is None:
        from langid.langid import LanguageIdentifier, model

        _IDENTIFIER = LanguageIdentifier.from_modelstring(model, norm_probs=True)
    return _IDENTIFIER


def classify(text: str, max_chars: int = 2000) -> Tuple[Optional[str], float]:
    """(language code, probability) of text; (None, 0.0) when there is no text.

    The text is lower-cased first: langid's byte n-grams mistake ALL-CAPS English for other
    languages far more often than lower case."""
    t = (text or "").strip()
    if not t:
        return None, 0.0
    lang, prob = _identifier().classify(t[:max_chars].lower())
    return lang, float(prob)
