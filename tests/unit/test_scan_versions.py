"""Version ordering: dpkg's verrevcmp, apk's ordering, PEP 440."""

import pytest

from dockyard.scan.versions import apk_compare, comparator, dpkg_compare, pypi_compare


def sign(n: int) -> int:
    return (n > 0) - (n < 0)


@pytest.mark.parametrize(("a", "b", "want"), [
    ("1.0", "1.0", 0),
    ("1.0", "1.1", -1),
    ("1.0-1", "1.0-2", -1),
    ("1:1.0", "2.0", 1),           # the epoch wins
    ("0:1.0", "1.0", 0),
    ("1.0~rc1", "1.0", -1),        # ~ sorts before everything, even the end
    ("1.0~rc1", "1.0~rc2", -1),
    ("1.0~~", "1.0~", -1),
    ("1.0", "1.0+b1", -1),
    ("1.0a", "1.0", 1),
    ("1.0a", "1.0+", -1),          # letters before other characters
    ("1.10", "1.9", 1),            # digits compare as numbers
    ("1.002", "1.2", 0),
    ("3.0.11-1~deb12u1", "3.0.11-1~deb12u2", -1),
    ("3.0.11-1~deb12u2", "3.0.11-1", -1),
    ("1:1.2.13.dfsg-1", "1:1.2.13.dfsg-1", 0),
    ("2.36-9+deb12u4", "2.36-9+deb12u10", -1),
    ("1.0-1", "1.0", 1),           # an empty revision is the lowest
])
def test_dpkg(a, b, want):
    assert sign(dpkg_compare(a, b)) == want
    assert sign(dpkg_compare(b, a)) == -want


@pytest.mark.parametrize(("a", "b", "want"), [
    ("1.36.1-r15", "1.36.1-r16", -1),
    ("1.36.1-r16", "1.36.1-r16", 0),
    ("1.36.1", "1.36.1-r0", 0),
    ("1.2.10", "1.2.9", 1),
    ("1.2_rc1", "1.2", -1),
    ("1.2_alpha1", "1.2_beta1", -1),
    ("1.2_p1", "1.2", 1),
    ("1.2a", "1.2", 1),
    ("1.2a", "1.2b", -1),
    ("3.1.4-r5", "3.1.4_git20230101-r0", -1),
    ("2.0", "1.9.9-r9", 1),
])
def test_apk(a, b, want):
    assert sign(apk_compare(a, b)) == want
    assert sign(apk_compare(b, a)) == -want


@pytest.mark.parametrize(("a", "b", "want"), [
    ("2.30.0", "2.31.0", -1),
    ("2.31.0", "2.31", 0),
    ("1.0rc1", "1.0", -1),
    ("1.0.dev1", "1.0a1", -1),
    ("1.0.post1", "1.0", 1),
    ("1!0.1", "2.0", 1),
    ("1.10", "1.9", 1),
])
def test_pep440(a, b, want):
    assert sign(pypi_compare(a, b)) == want
    assert sign(pypi_compare(b, a)) == -want


def test_comparator_by_ecosystem():
    assert comparator("Debian:12") is dpkg_compare
    assert comparator("Ubuntu:22.04") is dpkg_compare
    assert comparator("Alpine:v3.19") is apk_compare
    assert comparator("PyPI") is pypi_compare
