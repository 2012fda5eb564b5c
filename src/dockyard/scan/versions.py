"""Version ordering per ecosystem: dpkg (Debian, Ubuntu), apk (Alpine), PEP 440 (PyPI)."""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cmp_to_key

# -- dpkg ----------------------------------------------------------------------------------------


def _dpkg_order(c: str) -> int:
    if c.isdigit():
        return 0
    if c.isalpha():
        return ord(c)
    if c == "~":
        return -1
    if c:
        return ord(c) + 256
    return 0


def _verrevcmp(a: str, b: str) -> int:
    """dpkg's verrevcmp: non-digit runs by the modified ASCII order (~ first, letters before other
    characters), digit runs numerically."""
    i = j = 0
    while i < len(a) or j < len(b):
        first_diff = 0
        while (i < len(a) and not a[i].isdigit()) or (j < len(b) and not b[j].isdigit()):
            ac = _dpkg_order(a[i]) if i < len(a) else 0
            bc = _dpkg_order(b[j]) if j < len(b) else 0
            if ac != bc:
                return ac - bc
            i += 1
            j += 1
        while i < len(a) and a[i] == "0":
            i += 1
        while j < len(b) and b[j] == "0":
            j += 1
        while i < len(a) and a[i].isdigit() and j < len(b) and b[j].isdigit():
            if not first_diff:
                first_diff = ord(a[i]) - ord(b[j])
            i += 1
            j += 1
        if i < len(a) and a[i].isdigit():
            return 1
        if j < len(b) and b[j].isdigit():
            return -1
        if first_diff:
            return first_diff
    return 0


def _dpkg_split(v: str) -> tuple[int, str, str]:
    v = v.strip()
    epoch = 0
    if ":" in v:
        e, v = v.split(":", 1)
        epoch = int(e) if e.isdigit() else 0
    upstream, sep, revision = v.rpartition("-")
    if not sep:
        upstream, revision = v, ""
    return epoch, upstream, revision


def dpkg_compare(a: str, b: str) -> int:
    """<0, 0, >0 as dpkg --compare-versions orders ``a`` and ``b`` (epoch:upstream-revision)."""
    ea, ua, ra = _dpkg_split(a)
    eb, ub, rb = _dpkg_split(b)
    if ea != eb:
        return -1 if ea < eb else 1
    c = _verrevcmp(ua, ub)
    if c:
        return c
    return _verrevcmp(ra, rb)


# -- apk -----------------------------------------------------------------------------------------

_APK_RE = re.compile(r"^(\d+(?:\.\d+)*)([a-z]?)((?:_[a-z]+\d*)*)(?:-r(\d+))?$")
_APK_SUFFIX_PRE = {"alpha": -4, "beta": -3, "pre": -2, "rc": -1}
_APK_SUFFIX_POST = {"cvs": 1, "svn": 2, "git": 3, "hg": 4, "p": 5}


def _apk_key(v: str) -> tuple[object, ...]:
    m = _APK_RE.match(v.strip())
    if m is None:  # not an apk version: order it after every valid one, by text
        return (1, v)
    nums = [int(x) for x in m.group(1).split(".")]
    letter = m.group(2) or ""
    suffixes: list[tuple[int, int]] = []
    for s in m.group(3).split("_")[1:]:
        sm = re.match(r"([a-z]+)(\d*)$", s)
        assert sm is not None
        word, n = sm.group(1), int(sm.group(2) or 0)
        rank = _APK_SUFFIX_PRE.get(word, _APK_SUFFIX_POST.get(word, 0))
        suffixes.append((rank, n))
    # No suffix sorts between the pre-release ones (negative) and the post-release ones.
    suffixes.append((0, 0))
    return (0, nums, letter, suffixes, int(m.group(4) or 0))


def apk_compare(a: str, b: str) -> int:
    """<0, 0, >0 by apk's ordering: numbers, a letter, _alpha/_beta/_pre/_rc before the release
    and _cvs/_svn/_git/_hg/_p after it, then the -rN package revision."""
    ka, kb = _apk_key(a), _apk_key(b)
    if ka[0] != kb[0]:
        return -1 if ka[0] == 0 else 1
    if ka[0] == 1:
        return (ka[1] > kb[1]) - (ka[1] < kb[1])  # type: ignore[operator]
    _, na, la, sa, ra = ka
    _, nb, lb, sb, rb = kb
    for x, y in ((na, nb), (la, lb), (sa, sb), (ra, rb)):
        if x != y:
            return -1 if x < y else 1  # type: ignore[operator]
    return 0


# -- PEP 440 -------------------------------------------------------------------------------------

def pypi_compare(a: str, b: str) -> int:
    """<0, 0, >0 by PEP 440 (packaging.version); unparseable versions fall back to their numbers."""
    ka, kb = _pep440_key(a), _pep440_key(b)
    return -1 if ka < kb else (1 if ka > kb else 0)


def _pep440_key(v: str) -> tuple[int, object]:
    from packaging.version import InvalidVersion, Version

    try:
        return (1, Version(v))
    except InvalidVersion:
        return (0, tuple(int(x) for x in re.findall(r"\d+", v)))


def _text_compare(a: str, b: str) -> int:
    return (a > b) - (a < b)


def comparator(ecosystem: str) -> Callable[[str, str], int]:
    """The version comparison of an OSV ecosystem ("Debian:12", "Alpine:v3.19", "PyPI", ...)."""
    base = ecosystem.split(":", 1)[0]
    if base in ("Debian", "Ubuntu"):
        return dpkg_compare
    if base in ("Alpine", "Wolfi", "Chainguard"):
        return apk_compare
    if base == "PyPI":
        return pypi_compare
    return _text_compare


def sort_key(ecosystem: str) -> Callable[[str], object]:
    return cmp_to_key(comparator(ecosystem))
