"""An advisory's severity in ECR's terms, from OSV's severity data or a CVSS vector."""

from __future__ import annotations

import math
import re
from typing import Any

SEVERITIES = ("CRITICAL", "HIGH", "MEDIUM", "LOW", "INFORMATIONAL", "UNDEFINED")
_WORDS = {"CRITICAL": "CRITICAL", "HIGH": "HIGH", "IMPORTANT": "HIGH", "MODERATE": "MEDIUM",
          "MEDIUM": "MEDIUM", "LOW": "LOW", "NEGLIGIBLE": "INFORMATIONAL", "UNIMPORTANT": "INFORMATIONAL",
          "INFORMATIONAL": "INFORMATIONAL", "NONE": "INFORMATIONAL"}


def from_score(score: float) -> str:
    if score >= 9.0:
        return "CRITICAL"
    if score >= 7.0:
        return "HIGH"
    if score >= 4.0:
        return "MEDIUM"
    if score > 0:
        return "LOW"
    return "INFORMATIONAL"


def _roundup(x: float) -> float:
    i = round(x * 100000)
    return i / 100000.0 if i % 10000 == 0 else (math.floor(i / 10000) + 1) / 10.0


_V3 = {"AV": {"N": 0.85, "A": 0.62, "L": 0.55, "P": 0.2}, "AC": {"L": 0.77, "H": 0.44},
       "UI": {"N": 0.85, "R": 0.62}, "C": {"H": 0.56, "L": 0.22, "N": 0.0}}


def cvss3_score(vector: str) -> float | None:
    """The CVSS v3.x base score of a vector ("CVSS:3.1/AV:N/AC:L/..."), None if it is not one."""
    if not vector.startswith("CVSS:3"):
        return None
    m = dict(p.split(":", 1) for p in vector.split("/")[1:] if ":" in p)
    try:
        scope_changed = m["S"] == "C"
        pr = {"N": 0.85, "L": 0.68 if scope_changed else 0.62, "H": 0.5 if scope_changed else 0.27}[m["PR"]]
        av, ac, ui = _V3["AV"][m["AV"]], _V3["AC"][m["AC"]], _V3["UI"][m["UI"]]
        c, i, a = (_V3["C"][m[k]] for k in ("C", "I", "A"))
    except KeyError:
        return None
    iss = 1 - (1 - c) * (1 - i) * (1 - a)
    impact = 7.52 * (iss - 0.029) - 3.25 * (iss - 0.02) ** 15 if scope_changed else 6.42 * iss
    exploitability = 8.22 * av * ac * pr * ui
    if impact <= 0:
        return 0.0
    if scope_changed:
        return _roundup(min(1.08 * (impact + exploitability), 10))
    return _roundup(min(impact + exploitability, 10))


def _score_of(entry: dict[str, Any]) -> tuple[float | None, str | None]:
    """(score, vector) of an OSV severity entry."""
    raw = str(entry.get("score", ""))
    if re.fullmatch(r"\d+(?:\.\d+)?", raw):
        return float(raw), None
    return cvss3_score(raw), raw or None


def severity(adv: dict[str, Any], affected: dict[str, Any] | None = None) -> tuple[str, float | None, str | None]:
    """(ECR severity, CVSS score or None, CVSS vector or None) of an advisory."""
    score: float | None = None
    vector: str | None = None
    entries = list(adv.get("severity") or []) + list((affected or {}).get("severity") or [])
    for e in sorted(entries, key=lambda e: str(e.get("type", "")), reverse=True):  # V4, V3, V2
        s, v = _score_of(e)
        if s is not None:
            score, vector = s, v
            break
        vector = vector or v
    for src in ((affected or {}).get("ecosystem_specific"), (affected or {}).get("database_specific"),
                adv.get("database_specific")):
        word = (src or {}).get("severity") if isinstance(src, dict) else None
        if isinstance(word, str) and word.upper() in _WORDS:
            return _WORDS[word.upper()], score, vector
    if score is not None:
        return from_score(score), score, vector
    return "UNDEFINED", None, vector
