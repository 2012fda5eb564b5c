"""OSV range matching, severities, and loading the fixture advisory database into a store."""

import json
import zipfile
from pathlib import Path

import pytest

from dockyard.scan import advisories
from dockyard.scan.inventory import Package
from dockyard.scan.matcher import affects, finding_name, match, severity_counts
from dockyard.scan.severity import cvss3_score, from_score, severity
from dockyard.state.store import Store

FIXTURES = Path(__file__).parents[1] / "fixtures" / "advisories"


def rng(*events, kind="ECOSYSTEM"):
    return {"ranges": [{"type": kind, "events": list(events)}]}


@pytest.mark.parametrize(("version", "want"), [
    ("3.0.11-1~deb12u1", True), ("3.0.11-1~deb12u2", False), ("3.0.12-1", False), ("1:0.1", False),
])
def test_introduced_zero_fixed(version, want):
    aff = rng({"introduced": "0"}, {"fixed": "3.0.11-1~deb12u2"})
    assert affects(aff, "Debian:12", version) is want


def test_several_intervals_and_last_affected():
    aff = rng({"introduced": "1.0"}, {"fixed": "1.2"}, {"introduced": "2.0"}, {"last_affected": "2.3"})
    got = {v: affects(aff, "PyPI", v) for v in ("0.9", "1.0", "1.1.5", "1.2", "1.9", "2.0", "2.3", "2.3.1")}
    assert got == {"0.9": False, "1.0": True, "1.1.5": True, "1.2": False, "1.9": False, "2.0": True,
                   "2.3": True, "2.3.1": False}
    # Events in any order: OSV sorts them.
    shuffled = rng({"last_affected": "2.3"}, {"introduced": "2.0"}, {"fixed": "1.2"}, {"introduced": "1.0"})
    assert [affects(shuffled, "PyPI", v) for v in ("1.1", "1.5", "2.1", "2.4")] == [True, False, True, False]


def test_versions_list_and_git_ranges_ignored():
    aff = {"versions": ["5.3", "5.3.1"], **rng({"introduced": "0"}, kind="GIT")}
    assert affects(aff, "PyPI", "5.3.1") and not affects(aff, "PyPI", "5.4")


def test_alpine_range():
    aff = rng({"introduced": "0"}, {"fixed": "1.36.1-r16"})
    assert affects(aff, "Alpine:v3.19", "1.36.1-r15") and not affects(aff, "Alpine:v3.19", "1.36.1-r16")


def test_cvss_and_severity_words():
    assert cvss3_score("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H") == 9.8
    assert cvss3_score("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H") == 10.0
    assert cvss3_score("CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:L/I:L/A:L") == 5.3
    assert cvss3_score("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:N") == 0.0
    assert cvss3_score("AV:N/AC:L/Au:N/C:P/I:P/A:P") is None
    assert [from_score(s) for s in (9.0, 7.0, 6.9, 4.0, 0.1, 0.0)] == [
        "CRITICAL", "HIGH", "MEDIUM", "MEDIUM", "LOW", "INFORMATIONAL"]
    assert severity({"database_specific": {"severity": "MODERATE"}})[0] == "MEDIUM"
    assert severity({"severity": [{"type": "CVSS_V3", "score": "7.5"}]})[0] == "HIGH"
    assert severity({})[0] == "UNDEFINED"
    # The package's own severity (ecosystem_specific) comes before the record's.
    adv = {"database_specific": {"severity": "LOW"}}
    assert severity(adv, {"ecosystem_specific": {"severity": "CRITICAL"}})[0] == "CRITICAL"


def test_finding_name_prefers_cve():
    assert finding_name({"id": "DSA-1-1", "aliases": ["CVE-2099-1"]}) == "CVE-2099-1"
    assert finding_name({"id": "ALPINE-X", "upstream": ["CVE-2099-2"]}) == "CVE-2099-2"
    assert finding_name({"id": "GHSA-x"}) == "GHSA-x"


@pytest.fixture
def store(tmp_path):
    s = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    s.migrate()
    return s


def test_load_fixture_and_match(store, tmp_path):
    with store.transaction() as tx:
        n = advisories.load(tx, advisories.read_path(FIXTURES), now=1000.0)
    assert n == 6
    packages = [
        Package("Debian:12", "openssl", "3.0.11-1~deb12u1", "libssl3"),   # vulnerable
        Package("Debian:12", "zlib", "1:1.2.13.dfsg-1", "zlib1g"),        # fixed
        Package("Alpine:v3.19", "busybox", "1.36.1-r15"),                  # vulnerable
        Package("PyPI", "requests", "2.30.0", "requests"),                 # vulnerable (name normalised)
        Package("PyPI", "py-yaml", "5.3.1", "PyYAML"),                     # listed version
        Package("PyPI", "py-yaml", "6.0.2", "PyYAML"),                     # past last_affected
    ]
    with store.transaction() as tx:
        found = advisories.for_packages(tx, [(p.ecosystem, p.name) for p in packages])
        assert advisories.updated_at(tx) == 1000.0
    findings = match(packages, found)
    got = [(f["name"], f["severity"], {a["key"]: a["value"] for a in f["attributes"]}["package_version"])
           for f in findings]
    assert got == [("CVE-2099-0001", "CRITICAL", "3.0.11-1~deb12u1"),
                   ("CVE-2099-0003", "MEDIUM", "1.36.1-r15"),
                   ("CVE-2099-0004", "MEDIUM", "2.30.0"),
                   ("CVE-2099-0006", "UNDEFINED", "5.3.1")]
    assert findings[0]["uri"] == "https://security-tracker.debian.org/tracker/DSA-9001-1"
    assert findings[0]["description"].startswith("openssl:")
    assert severity_counts(findings) == {"CRITICAL": 1, "MEDIUM": 2, "UNDEFINED": 1}


def test_load_zip_replaces_by_id(store, tmp_path):
    z = tmp_path / "all.zip"
    rec = json.loads((FIXTURES / "alpine-v3.19.json").read_text())
    with zipfile.ZipFile(z, "w") as f:
        f.writestr("ALPINE-CVE-2099-0003.json", json.dumps(rec))
    with store.transaction() as tx:
        assert advisories.load(tx, advisories.read_path(z)) == 1
    rec["affected"][0]["package"]["name"] = "busybox-extras"
    single = tmp_path / "one.json"
    single.write_text(json.dumps(rec))
    with store.transaction() as tx:
        advisories.load(tx, advisories.read_path(single))
        assert advisories.for_package(tx, "Alpine:v3.19", "busybox") == []
        assert [a["id"] for a in advisories.for_package(tx, "Alpine:v3.19", "busybox-extras")] == [
            "ALPINE-CVE-2099-0003"]


def test_not_osv_is_refused(tmp_path):
    p = tmp_path / "x.json"
    p.write_text('{"no": "id"}')
    with pytest.raises(advisories.AdvisoryError):
        list(advisories.read_path(p))
