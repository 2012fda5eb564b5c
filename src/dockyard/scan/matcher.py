"""Which advisories affect which packages (OSV ranges), as ECR's ImageScanFinding shapes."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from dockyard.scan import severity as sev
from dockyard.scan.advisories import Advisory, package_key
from dockyard.scan.inventory import Package
from dockyard.scan.versions import comparator

Finding = dict[str, Any]
_RANK = {s: i for i, s in enumerate(sev.SEVERITIES)}


def _in_range(version: str, events: list[dict[str, str]], cmp: Callable[[str, str], int]) -> bool:
    """OSV's evaluation of one range's events (sorted by version; introduced "0" is the start)."""
    def key_version(e: dict[str, str]) -> str | None:
        for k in ("introduced", "fixed", "last_affected", "limit"):
            if k in e:
                return str(e[k])
        return None

    def cmp_events(a: dict[str, str], b: dict[str, str]) -> int:
        va, vb = key_version(a), key_version(b)
        if va == vb:
            return 0
        if va == "0" or va is None:
            return -1
        if vb == "0" or vb is None:
            return 1
        return cmp(va, vb)

    from functools import cmp_to_key

    affected = False
    for e in sorted(events, key=cmp_to_key(cmp_events)):
        if "introduced" in e:
            if e["introduced"] == "0" or cmp(version, e["introduced"]) >= 0:
                affected = True
        elif "fixed" in e:
            if cmp(version, e["fixed"]) >= 0:
                affected = False
        elif "last_affected" in e:
            if cmp(version, e["last_affected"]) > 0:
                affected = False
        elif "limit" in e and cmp(version, e["limit"]) >= 0:
            affected = False
    return affected


def affects(affected: dict[str, Any], ecosystem: str, version: str) -> bool:
    """Whether one ``affected[]`` entry of an advisory covers ``version``."""
    cmp = comparator(ecosystem)
    if any(cmp(version, str(v)) == 0 for v in affected.get("versions") or []):
        return True
    for r in affected.get("ranges") or []:
        if r.get("type") in ("ECOSYSTEM", "SEMVER") and _in_range(version, r.get("events") or [], cmp):
            return True
    return False


def fixed_versions(affected: dict[str, Any]) -> list[str]:
    return [str(e["fixed"]) for r in affected.get("ranges") or [] for e in r.get("events") or [] if "fixed" in e]


def finding_name(adv: Advisory) -> str:
    """The CVE id ECR names findings by (the advisory's own id when it has no CVE alias)."""
    aid = str(adv["id"])
    if aid.startswith("CVE-"):
        return aid
    for alias in list(adv.get("aliases") or []) + list(adv.get("upstream") or []):
        if str(alias).startswith("CVE-"):
            return str(alias)
    return aid


def _uri(adv: Advisory) -> str:
    refs = adv.get("references") or []
    for kind in ("ADVISORY", "WEB"):
        for r in refs:
            if r.get("type") == kind and r.get("url"):
                return str(r["url"])
    return f"https://osv.dev/vulnerability/{adv['id']}"


def match(packages: Iterable[Package], advisories: dict[tuple[str, str], list[Advisory]]) -> list[Finding]:
    """Findings (most severe first, then by name) for the packages the advisories affect."""
    out: dict[tuple[str, str, str], Finding] = {}
    for pkg in packages:
        key = package_key(pkg.ecosystem, pkg.name)
        for adv in advisories.get(key, []):
            if adv.get("withdrawn"):
                continue
            for aff in adv.get("affected") or []:
                p = aff.get("package") or {}
                if package_key(str(p.get("ecosystem", "")), str(p.get("name", ""))) != key:
                    continue
                if not affects(aff, pkg.ecosystem, pkg.version):
                    continue
                name = finding_name(adv)
                fk = (name, pkg.name, pkg.version)
                if fk in out:
                    break
                level, score, vector = sev.severity(adv, aff)
                attrs = [{"key": "package_name", "value": pkg.name},
                         {"key": "package_version", "value": pkg.version}]
                if vector and vector.startswith("CVSS:3"):
                    attrs.append({"key": "CVSS3_VECTOR", "value": vector})
                if score is not None:
                    attrs.append({"key": "CVSS3_SCORE" if vector and vector.startswith("CVSS:3")
                                  else "CVSS_SCORE", "value": f"{score:.1f}"})
                fixed = fixed_versions(aff)
                if fixed:
                    attrs.append({"key": "fixed_in_version", "value": fixed[-1]})
                if name != adv["id"]:
                    attrs.append({"key": "advisory_id", "value": str(adv["id"])})
                desc = str(adv.get("summary") or adv.get("details") or "")[:2048]
                f: Finding = {"name": name, "uri": _uri(adv), "severity": level, "attributes": attrs}
                if desc:
                    f["description"] = desc
                out[fk] = f
                break
    return sorted(out.values(), key=lambda f: (_RANK.get(f["severity"], 9), f["name"],
                                               f["attributes"][0]["value"]))


def severity_counts(findings: Iterable[Finding]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for f in findings:
        counts[f["severity"]] = counts.get(f["severity"], 0) + 1
    return counts
