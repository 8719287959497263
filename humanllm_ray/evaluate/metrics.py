"""Metric arithmetic with bootstrap confidence intervals; no models in here.

Held-out loss is a ratio of sums (total NLL over total answer tokens), so long answers
weigh more, as in training. Confidence intervals resample *examples* (not tokens): the
tokens of one answer are not independent draws, and the example is the unit that was
sampled from the held-out users.
"""

from __future__ import annotations

import math
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np

CI = Optional[Tuple[float, float]]


def bootstrap_indices(n: int, samples: int, seed: int) -> np.ndarray:
    """(samples, n) indices drawn with replacement; one matrix shared by paired statistics."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, n, size=(samples, n))


def percentile_ci(stats: np.ndarray, confidence: float) -> Tuple[float, float]:
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(stats, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def loss_summary(
    nll: Sequence[float],
    tokens: Sequence[int],
    *,
    samples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Dict[str, Any]:
    """Mean per-token loss, perplexity and their bootstrap CIs over examples."""
    nll_arr = np.asarray(nll, dtype=np.float64)
    tok_arr = np.asarray(tokens, dtype=np.float64)
    n = len(nll_arr)
    if n == 0 or tok_arr.sum() == 0:
        return {"loss": None, "loss_ci": None, "perplexity": None, "perplexity_ci": None, "examples": n, "tokens": 0}
    loss = float(nll_arr.sum() / tok_arr.sum())
    idx = bootstrap_indices(n, samples, seed)
    boot = nll_arr[idx].sum(axis=1) / np.maximum(tok_arr[idx].sum(axis=1), 1.0)
    lo, hi = percentile_ci(boot, confidence)
    return {
        "loss": loss,
        "loss_ci": [lo, hi],
        "perplexity": math.exp(loss),
        "perplexity_ci": [math.exp(lo), math.exp(hi)],
        "examples": n,
        "tokens": int(tok_arr.sum()),
    }


def accuracy_summary(
    correct: Sequence[bool],
    num_choices: Sequence[int],
    *,
    samples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Dict[str, Any]:
    """Accuracy with a bootstrap CI, and chance level (mean of 1 / number of choices)."""
    c = np.asarray(correct, dtype=np.float64)
    n = len(c)
    if n == 0:
        return {"accuracy": None, "accuracy_ci": None, "chance": None, "examples": 0}
    idx = bootstrap_indices(n, samples, seed)
    lo, hi = percentile_ci(c[idx].mean(axis=1), confidence)
    chance = float(np.mean(1.0 / np.asarray(num_choices, dtype=np.float64)))
    return {"accuracy": float(c.mean()), "accuracy_ci": [lo, hi], "chance": chance, "examples": n}


def paired_loss_delta(
    nll_a: Sequence[float],
    tokens_a: Sequence[int],
    nll_b: Sequence[float],
    tokens_b: Sequence[int],
    *,
    samples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Dict[str, Any]:
    """loss(A) - loss(B) on the same examples, with a paired bootstrap CI (the same
    resampled examples for both models, so example difficulty cancels out)."""
    na, ta = np.asarray(nll_a, dtype=np.float64), np.asarray(tokens_a, dtype=np.float64)
    nb, tb = np.asarray(nll_b, dtype=np.float64), np.asarray(tokens_b, dtype=np.float64)
    if len(na) != len(nb):
        raise ValueError("paired comparison needs the same examples for both models")
    n = len(na)
    if n == 0 or ta.sum() == 0 or tb.sum() == 0:
        return {"delta": None, "delta_ci": None, "examples": n, "verdict": "no data"}
    delta = float(na.sum() / ta.sum() - nb.sum() / tb.sum())
    idx = bootstrap_indices(n, samples, seed)
    boot = na[idx].sum(1) / np.maximum(ta[idx].sum(1), 1.0) - nb[idx].sum(1) / np.maximum(tb[idx].sum(1), 1.0)
    lo, hi = percentile_ci(boot, confidence)
    if hi < 0:
        verdict = "lower"  # A's loss is lower than B's: A is better
    elif lo > 0:
        verdict = "higher"
    else:
        verdict = "indistinguishable"
    return {"delta": delta, "delta_ci": [lo, hi], "examples": n, "verdict": verdict}


def _ratio(nll: np.ndarray, tokens: np.ndarray, idx: Optional[np.ndarray] = None):
    """Per-token loss (ratio of sums), over all examples or over each bootstrap resample."""
    if idx is None:
        return float(nll.sum() / tokens.sum())
    return nll[idx].sum(axis=1) / np.maximum(tokens[idx].sum(axis=1), 1.0)


def _verdict(lo: float, hi: float, below: str, above: str) -> str:
    if hi < 0:
        return below
    if lo > 0:
        return above
    return "indistinguishable"


def personalization_gain(
    nll_with: Sequence[float],
    tokens_with: Sequence[int],
    nll_without: Sequence[float],
    tokens_without: Sequence[int],
    *,
    samples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Dict[str, Any]:
    """gain = loss(target | generic prompt) - loss(target | prompt with profile/history).

    Both losses are over the *same* target text (the person's real post or comment), so a
    positive gain means the model puts more probability on what this person actually wrote
    once it knows who they are. Paired bootstrap over examples (both prompts of an example
    are resampled together)."""
    wo = paired_loss_delta(nll_without, tokens_without, nll_with, tokens_with, samples=samples, confidence=confidence, seed=seed)
    if wo["delta"] is None:
        return {"gain": None, "gain_ci": None, "loss_with": None, "loss_without": None, "examples": wo["examples"], "verdict": "no data"}
    lo, hi = wo["delta_ci"]
    return {
        "gain": wo["delta"],
        "gain_ci": [lo, hi],
        "loss_with": float(np.sum(nll_with) / np.sum(tokens_with)),
        "loss_without": float(np.sum(nll_without) / np.sum(tokens_without)),
        "examples": wo["examples"],
        "tokens": int(np.sum(tokens_with)),
        "verdict": _verdict(lo, hi, "hurts", "helps"),  # helps: the profile/history lowers the loss
    }


def gain_difference(
    a: Tuple[Sequence[float], Sequence[int], Sequence[float], Sequence[int]],
    b: Tuple[Sequence[float], Sequence[int], Sequence[float], Sequence[int]],
    *,
    samples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Dict[str, Any]:
    """gain(A) - gain(B) on the same examples; each argument is (nll_with, tokens_with,
    nll_without, tokens_without). One bootstrap matrix resamples the examples for all four
    losses, so 'does model A use the person's profile more than model B' gets a paired CI."""
    arrs = [[np.asarray(x, dtype=np.float64) for x in side] for side in (a, b)]
    n = len(arrs[0][0])
    if any(len(x) != n for side in arrs for x in side):
        raise ValueError("gain difference needs the same examples for both models")
    if n == 0 or any(side[1].sum() == 0 or side[3].sum() == 0 for side in arrs):
        return {"delta": None, "delta_ci": None, "examples": n, "verdict": "no data"}

    def gain(side, idx=None):
        w_n, w_t, o_n, o_t = side
        return _ratio(o_n, o_t, idx) - _ratio(w_n, w_t, idx)

    delta = float(gain(arrs[0]) - gain(arrs[1]))
    idx = bootstrap_indices(n, samples, seed)
    lo, hi = percentile_ci(gain(arrs[0], idx) - gain(arrs[1], idx), confidence)
    return {"delta": delta, "delta_ci": [lo, hi], "examples": n, "verdict": _verdict(lo, hi, "smaller", "larger")}


def mean_summary(
    values: Sequence[float], *, samples: int = 1000, confidence: float = 0.95, seed: int = 0
) -> Dict[str, Any]:
    """Mean with a bootstrap CI over items (None values are left out)."""
    v = np.asarray([x for x in values if x is not None], dtype=np.float64)
    n = len(v)
    if n == 0:
        return {"mean": None, "mean_ci": None, "examples": 0}
    idx = bootstrap_indices(n, samples, seed)
    lo, hi = percentile_ci(v[idx].mean(axis=1), confidence)
    return {"mean": float(v.mean()), "mean_ci": [lo, hi], "examples": n}


def paired_mean_delta(
    a: Sequence[float], b: Sequence[float], *, samples: int = 1000, confidence: float = 0.95, seed: int = 0
) -> Dict[str, Any]:
    """mean(a - b) over pairs where both are present, with a paired bootstrap CI."""
    if len(a) != len(b):
        raise ValueError("paired comparison needs the same items")
    d = np.asarray([x - y for x, y in zip(a, b) if x is not None and y is not None], dtype=np.float64)
    n = len(d)
    if n == 0:
        return {"delta": None, "delta_ci": None, "examples": 0, "verdict": "no data"}
    idx = bootstrap_indices(n, samples, seed)
    lo, hi = percentile_ci(d[idx].mean(axis=1), confidence)
    return {"delta": float(d.mean()), "delta_ci": [lo, hi], "examples": n, "verdict": _verdict(lo, hi, "lower", "higher")}
