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
