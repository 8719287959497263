"""Real names in generated text become placeholders (PersonA, PersonB, ...).

The rule (DESIGN.md §1, "Real names in generated text become placeholders"): a capitalized
word from a list of common English given names — optionally followed by a capitalized
surname — is a person's name. Names that are also ordinary English words (Will, May, Bill,
Grace, Mark, ...) are left out of the list on purpose: replacing "Will" in "Will the user
go?" would damage far more text than it protects. One mapping is shared by all fields of an
item, so "Anna" is PersonA in the scenario and in the answer alike; placeholders the model
already wrote are kept and new ones continue after them.
"""

from __future__ import annotations

import re
from typing import Dict, List, Tuple

GIVEN_NAMES = frozenset(
    """
    Aaron Abigail Adam Adrian Aiden Alan Albert Alex Alexander Alexandra Alexis Alice Alicia Allison Alyssa
    Amanda Amber Amy Andrea Andrew Angela Anna Anne Anthony Antonio Arthur Ashley Austin Barbara Benjamin
    Betty Beverly Brandon Brenda Brian Brittany Bruce Bryan Caleb Cameron Carl Carlos Carol Caroline
    Catherine Charles Charlotte Cheryl Chloe Christian Christina Christine Christopher Cynthia Daniel
    Danielle David Deborah Debra Denise Dennis Diana Diane Donald Donna Doris Dorothy Douglas Dylan Edward
    Elijah Elizabeth Emily Emma Eric Ethan Eugene Evelyn Frances Gabriel Gary George Gerald Gloria Gregory
    Hannah Harold Heather Helen Henry Isabella Jacob Jacqueline Jamie Janet Janice Jason Jean Jeffrey
    Jennifer Jeremy Jessica Jesse Joan Joe Johnny John Jonathan Jordan Jose Joseph Joshua Joyce Juan Judith
    Judy Julia Julie Justin Karen Katherine Kathleen Kathryn Kayla Keith Kelly Kenneth Kevin Kimberly Kyle
    Larry Laura Lauren Lawrence Linda Lisa Logan Louis Lucas Luis Madison Margaret Maria Marie Marilyn
    Martha Mary Matthew Megan Melissa Michael Michelle Mildred Nancy Natalie Nathan Nicholas Nicole Noah
    Olivia Pamela Patricia Patrick Paul Peter Philip Rachel Ralph Randy Raymond Rebecca Richard Robert
    Roger Ronald Roy Russell Ryan Samantha Samuel Sandra Sara Sarah Scott Sean Sharon Shirley Sophia
    Stephanie Stephen Steven Susan Teresa Terry Theresa Thomas Timothy Tyler Victoria Vincent Virginia
    Walter Wayne William Zachary
    """.split()
)

_PLACEHOLDER = re.compile(r"\bPerson([A-Z])\b")
_CAPITALIZED = re.compile(r"\b[A-Z][a-z]+\b")
_SURNAME = re.compile(r"\s+(?!Person[A-Z]\b)([A-Z][a-z]+)\b")


def _name_spans(text: str) -> List[Tuple[int, int, str]]:
    """(start, end, given name) of each name in text; a following capitalized word is its surname."""
    spans: List[Tuple[int, int, str]] = []
    pos = 0
    while True:
        m = _CAPITALIZED.search(text, pos)
        if m is None:
            return spans
        if m.group(0) not in GIVEN_NAMES:
            pos = m.end()
            continue
        end = m.end()
        surname = _SURNAME.match(text, end)
        if surname is not None and surname.group(1) not in GIVEN_NAMES:
            end = surname.end()
        spans.append((m.start(), end, m.group(0)))
        pos = end


def find_names(text: str) -> List[str]:
    """Names (given name, with surname if any) in text, in order of appearance."""
    return [text[a:b] for a, b, _ in _name_spans(text)]


def replace_names(fields: Dict[str, str]) -> Dict[str, str]:
    """Replace names in every field with placeholders, one consistent mapping for the item.

    The mapping is keyed by the given name, so "Anna Smith" and later "Anna" are one person.
    Beyond the free letters the last placeholder is reused (never crashes).
    """
    used = {m.group(1) for text in fields.values() for m in _PLACEHOLDER.finditer(text)}
    free = [chr(c) for c in range(ord("A"), ord("Z") + 1) if chr(c) not in used] or ["Z"]
    mapping: Dict[str, str] = {}
    out: Dict[str, str] = {}
    for key, text in fields.items():
        pieces, last = [], 0
        for a, b, given in _name_spans(text):
            if given not in mapping:
                mapping[given] = "Person" + free[min(len(mapping), len(free) - 1)]
            pieces.append(text[last:a])
            pieces.append(mapping[given])
            last = b
        pieces.append(text[last:])
        out[key] = "".join(pieces)
    return out
