"""Per-step training metrics: ``metrics.jsonl`` and a loss-curve PNG, written through storage."""

from __future__ import annotations

import io
import json
from typing import Any, Dict, List, Optional

from .. import storage


def write_metrics_jsonl(history: List[Dict[str, Any]], uri: str) -> None:
    storage.write_text(uri, "".join(json.dumps(m, sort_keys=True) + "\n" for m in history))


def plot_loss_curve(history: List[Dict[str, Any]], uri: str, *, resumed_from_step: Optional[int] = None) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display on workers / CI
    import matplotlib.pyplot as plt

    steps = [m["step"] for m in history]
    fig, ax_loss = plt.subplots(figsize=(7, 4), dpi=100)
    ax_loss.plot(steps, [m["loss"] for m in history], color="tab:blue", label="train loss")
    ax_loss.set_xlabel("optimizer step")
    ax_loss.set_ylabel("loss")
    ax_lr = ax_loss.twinx()
    ax_lr.plot(steps, [m["lr"] for m in history], color="tab:orange", alpha=0.6, label="learning rate")
    ax_lr.set_ylabel("learning rate")
    if resumed_from_step is not None:
        ax_loss.axvline(resumed_from_step, color="grey", linestyle="--", label=f"resumed at {resumed_from_step}")
    handles = ax_loss.get_legend_handles_labels()[0] + ax_lr.get_legend_handles_labels()[0]
    ax_loss.legend(handles=handles, loc="upper right")
    ax_loss.set_title("SFT loss")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    storage.write_bytes(uri, buf.getvalue())


def mean_of(history: List[Dict[str, Any]], key: str, window: slice) -> Optional[float]:
    values = [m[key] for m in history[window]]
    return sum(values) / len(values) if values else None
