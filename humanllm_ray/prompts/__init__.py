"""Versioned prompt templates: ``<name>.v<N>.txt`` files in this folder.

A template file holds chat messages as sections headed ``[system]`` / ``[user]`` /
``[assistant]`` on their own line; the text uses ``$variables`` (``string.Template``; a
literal dollar is ``$$``). Changing a prompt means adding a new version file and pointing
the product at it: the old one stays, so provenance (``prompt_version``, ``prompt_hash``)
of earlier runs keeps meaning something, and the request cache never mixes versions.
"""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Dict, List, Tuple

PROMPT_DIR = Path(__file__).resolve().parent
_SECTION = re.compile(r"^\[(system|user|assistant)\]\s*$", re.MULTILINE)


@dataclass(frozen=True)
class PromptTemplate:
    name: str  # e.g. "persona"
    version: str  # e.g. "persona.v1"
    text: str
    sections: Tuple[Tuple[str, str], ...]  # (role, template text)

    @property
    def hash(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()[:16]

    def render(self, **values: object) -> List[Dict[str, str]]:
        """Chat messages with every ``$variable`` filled; a missing variable is a KeyError."""
        strs = {k: str(v) for k, v in values.items()}
        return [{"role": role, "content": Template(body).substitute(strs)} for role, body in self.sections]


def parse_template(name: str, version: str, text: str) -> PromptTemplate:
    parts = _SECTION.split(text)
    if parts[0].strip():
        raise ValueError(f"prompt {version}: text before the first [role] header")
    sections = tuple((parts[i], parts[i + 1].strip("\n")) for i in range(1, len(parts), 2))
    if not sections:
        raise ValueError(f"prompt {version}: no [system]/[user] sections")
    return PromptTemplate(name=name, version=version, text=text, sections=sections)


@functools.lru_cache(maxsize=None)
def load_prompt(version: str) -> PromptTemplate:
    """Load ``<version>.txt``, e.g. ``load_prompt("persona.v1")``."""
    path = PROMPT_DIR / f"{version}.txt"
    if not path.exists():
        known = sorted(p.stem for p in PROMPT_DIR.glob("*.txt"))
        raise FileNotFoundError(f"no prompt template {version!r}; known: {known}")
    name = version.split(".v", 1)[0]
    return parse_template(name, version, path.read_text(encoding="utf-8"))
