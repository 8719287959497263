"""``humanllm simulate``: a person's profile + a scenario -> what that person does or says."""

from __future__ import annotations

import functools
import logging
from typing import Dict, List, Optional

log = logging.getLogger("humanllm")

# The instruction the SFT tasks put in the system turn (tasks.common.SYSTEM_SIMULATE), so the
# model meets the framing it was trained with; the profile follows it.
try:
    from ..tasks.common import SYSTEM_SIMULATE as SIMULATE_INSTRUCTION
except Exception:  # pragma: no cover - the tasks package is optional at inference time
    SIMULATE_INSTRUCTION = (
        "You are simulating one specific person. Answer exactly as this person would: "
        "their voice, their views, their habits."
    )


def simulation_messages(profile_text: str, scenario_text: str) -> List[Dict[str, str]]:
    """Chat turns: the profile in the system message, the scenario as the user turn."""
    profile = profile_text.strip()
    return [
        {"role": "system", "content": f"{SIMULATE_INSTRUCTION}\n\nProfile: {profile}"},
        {"role": "user", "content": scenario_text.strip()},
    ]


def _model_dir(model_uri: str, cache_dir: Optional[str]) -> str:
    """A published model (version or ``{name}`` folder, verified) or any model folder."""
    from .. import publish
    from ..model import resolve_model_dir

    if publish.is_published(model_uri):
        return publish.load(model_uri, cache_dir)
    return resolve_model_dir(model_uri)


@functools.lru_cache(maxsize=2)
def _loaded(model_dir: str):
    # Repeated simulate() calls in one process (a notebook, an eval loop) load once.
    from ..model import load_model, load_tokenizer

    return load_tokenizer(model_dir), load_model(model_dir).eval()


def simulate(
    model_uri: str,
    profile_text: str,
    scenario_text: str,
    max_new_tokens: int = 128,
    *,
    cache_dir: Optional[str] = None,
) -> str:
    """Answer ``scenario_text`` in character as the person in ``profile_text`` (greedy decoding)."""
    import torch

    from ..model import chat_prompt

    tokenizer, model = _loaded(_model_dir(model_uri, cache_dir))
    prompt = chat_prompt(tokenizer, simulation_messages(profile_text, scenario_text), add_generation_prompt=True)
    inputs = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        output = model.generate(
            **inputs,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    new_tokens = output[0, inputs["input_ids"].shape[1] :]
    return tokenizer.decode(new_tokens, skip_special_tokens=True).strip()
