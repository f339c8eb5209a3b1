"""Per-record consent cells: the spellings segflow accepts, and counting them.

A dataset may carry, per record, Google's two consent signals
(``ad_user_data`` and ``ad_personalization``). This module is the one place
that says what a cell means:

* empty (or only spaces): no value; the destination's own consent applies;
* one of :data:`GRANTED_SPELLINGS`: granted;
* one of :data:`DENIED_SPELLINGS`: denied;
* anything else (``unknown``, ``N/A``, ``pending``, a typo): **denied**, and
  counted as unrecognised so that the import summary and the link's status
  show it. Data Google must not use is never sent as granted by accident.

Spellings are compared after trimming, case-folding and dropping spaces,
hyphens and underscores, so ``Opt-In``, ``opt in`` and ``OPTED_IN`` are one.
The sync pass reads cells through
:func:`segflow.activation.outgoing.consent_value`, which uses this table;
the import's identifier summary counts them with :class:`ConsentColumn`.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

GRANTED = "granted"
DENIED = "denied"
EMPTY = "empty"
UNRECOGNISED = "unrecognised"

#: The mapping entries (and summary kinds) of the two per-record signals.
AD_USER_DATA = "consent_ad_user_data"
AD_PERSONALIZATION = "consent_ad_personalization"

#: Cell values read as granted (after folding, see the module docstring).
GRANTED_SPELLINGS = (
    "granted",
    "grant",
    "yes",
    "y",
    "true",
    "t",
    "1",
    "optin",
    "optedin",
    "consented",
    "accepted",
    "allow",
    "allowed",
)
#: Cell values read as denied; they are a clear answer, not counted as unrecognised.
DENIED_SPELLINGS = (
    "denied",
    "deny",
    "no",
    "n",
    "false",
    "f",
    "0",
    "optout",
    "optedout",
    "withdrawn",
    "revoked",
    "refused",
    "declined",
    "rejected",
    "unsubscribed",
)
_MEANING = {s: GRANTED for s in GRANTED_SPELLINGS} | {s: DENIED for s in DENIED_SPELLINGS}
_FOLD = re.compile(r"[\s_-]+")

#: Distinct unrecognised spellings kept as examples per column.
MAX_EXAMPLES = 5
#: Longest example kept (a cell can be long free text).
_EXAMPLE_CHARS = 40

# Header names (lower-cased, non-letters dropped) taken as consent columns.
_HEADERS = {
    AD_USER_DATA: {"consentaduserdata", "aduserdata", "aduserdataconsent"},
    AD_PERSONALIZATION: {
        "consentadpersonalization",
        "consentadpersonalisation",
        "adpersonalization",
        "adpersonalisation",
        "adpersonalizationconsent",
        "adpersonalisationconsent",
    },
}


def classify(raw: str | None) -> str:
    """What a consent cell says: ``granted``, ``denied``, ``empty`` or ``unrecognised``."""
    if raw is None:
        return EMPTY
    folded = _FOLD.sub("", raw.strip().casefold())
    if not folded:
        return EMPTY
    return _MEANING.get(folded, UNRECOGNISED)


def detect_consent(column_name: str) -> str | None:
    """The consent signal a header name holds (``consent_ad_user_data``...), if any."""
    folded = re.sub(r"[^a-z]", "", column_name.lower())
    for kind, names in _HEADERS.items():
        if folded in names:
            return kind
    return None


@dataclass
class ConsentColumn:
    """How one consent column's cells read, over the batches of an import."""

    column: str
    kind: str
    counts: Counter[str] = field(default_factory=Counter)
    #: Distinct unrecognised spellings as written, the first few seen.
    examples: list[str] = field(default_factory=list)

    def add_counts(self, counts: Iterable[tuple[str | None, int]]) -> None:
        """Count cells given as (value, how many); a consent column has few distinct values."""
        for value, n in counts:
            meaning = classify(value)
            self.counts[meaning] += n
            if meaning == UNRECOGNISED:
                self._example(str(value))

    def _example(self, value: str) -> None:
        shown = value.strip()[:_EXAMPLE_CHARS]
        if len(self.examples) < MAX_EXAMPLES and shown not in self.examples:
            self.examples.append(shown)

    def as_dict(self) -> dict[str, Any]:
        return {
            "column": self.column,
            "kind": self.kind,
            GRANTED: self.counts[GRANTED],
            DENIED: self.counts[DENIED],
            EMPTY: self.counts[EMPTY],
            # Unrecognised values are sent as denied.
            UNRECOGNISED: self.counts[UNRECOGNISED],
            "unrecognised_examples": list(self.examples),
        }


def describe(summary: Iterable[dict[str, Any]]) -> list[str]:
    """One line per consent column of an import summary, for people."""
    lines = []
    for c in summary:
        line = (
            f"{c['column']} ({c['kind']}): {c[GRANTED]} granted, {c[DENIED]} denied, "
            f"{c[EMPTY]} empty (destination's consent)"
        )
        if c[UNRECOGNISED]:
            shown = ", ".join(repr(e) for e in c["unrecognised_examples"])
            line += f", {c[UNRECOGNISED]} unrecognised, sent as denied ({shown})"
        lines.append(line)
    return lines
