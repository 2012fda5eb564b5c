"""ECR lifecycle rule evaluation (services/ecr/lifecycle.evaluate), with a fake clock."""

import json

import pytest

from dockyard.services.ecr.lifecycle import DAY, ImageFacts, evaluate
from dockyard.services.ecr.policies import check_lifecycle_policy

NOW = 1_800_000_000.0


def rule(prio, status, count_type="imageCountMoreThan", n=1, prefixes=None, patterns=None):
    sel = {"tagStatus": status, "countType": count_type, "countNumber": n}
    if count_type == "sinceImagePushed":
        sel["countUnit"] = "days"
    if prefixes is not None:
        sel["tagPrefixList"] = prefixes
    if patterns is not None:
        sel["tagPatternList"] = patterns
    return {"rulePriority": prio, "selection": sel, "action": {"type": "expire"}}


def policy(*rules):
    doc = {"rules": list(rules)}
    check_lifecycle_policy(json.dumps(doc))  # every policy tested here is one ECR accepts
    return doc


def img(name, days_ago, *tags, parents=()):
    return ImageFacts("sha256:" + name, tuple(tags), NOW - days_ago * DAY, frozenset("sha256:" + p for p in parents))


def run(pol, images, now=NOW):
    return [(d.removeprefix("sha256:"), p) for d, p in evaluate(pol, images, now)]


def names(pol, images, now=NOW):
    return sorted(d for d, _ in run(pol, images, now))


# -- selection ---------------------------------------------------------------

def test_untagged_count_keeps_newest():
    images = [img("a", 5), img("b", 4), img("c", 3), img("t", 1, "v1")]
    assert run(policy(rule(1, "untagged", n=1)), images) == [("a", 1), ("b", 1)]


def test_any_counts_every_image():
    images = [img("a", 5, "x"), img("b", 4), img("c", 3, "y"), img("d", 2)]
    assert names(policy(rule(1, "any", n=2)), images) == ["a", "b"]


def test_prefix_matches_any_tag_of_the_image():
    images = [img("a", 5, "dev-1", "prod-1"), img("b", 4, "prod-2"), img("c", 3, "prod-3"), img("d", 6, "dev-0")]
    assert names(policy(rule(1, "tagged", n=1, prefixes=["prod"])), images) == ["a", "b"]


def test_prefix_list_is_an_and():
    # ECR: with several entries, only images that have all of them are selected.
    images = [img("a", 5, "alpha-1", "beta-1"), img("b", 4, "alpha-2"), img("c", 3, "alpha-3", "beta-3"),
              img("d", 2, "beta-4")]
    assert names(policy(rule(1, "tagged", n=1, prefixes=["alpha", "beta"])), images) == ["a"]


def test_pattern_wildcards_match_whole_tags():
    images = [img("a", 6, "prod"), img("b", 5, "prod1"), img("c", 4, "preprod1"), img("d", 3, "prod-x-1"),
              img("e", 2, "prod2")]
    # prod* selects a, b, d, e (not preprod1): newest e kept
    assert names(policy(rule(1, "tagged", n=1, patterns=["prod*"])), images) == ["a", "b", "d"]
    assert names(policy(rule(1, "tagged", n=1, patterns=["*prod*"])), images) == ["a", "b", "c", "d"]
    # an exact pattern (no wildcard) matches only that tag
    assert names(policy(rule(1, "tagged", n=1, patterns=["prod1"])), images) == []
    assert names(policy(rule(1, "tagged", n=1, patterns=["prod*1"])), images) == ["b"]  # prod-x-1 kept


def test_pattern_metacharacters_are_literal():
    images = [img("a", 3, "v1.0"), img("b", 2, "v1x0"), img("c", 1, "v1.1")]
    assert names(policy(rule(1, "tagged", n=1, patterns=["v1.*"])), images) == ["a"]


def test_pattern_list_is_an_and():
    images = [img("a", 5, "prod-1", "latest"), img("b", 4, "prod-2"), img("c", 3, "prod-3", "latest-old")]
    assert names(policy(rule(1, "tagged", n=1, patterns=["prod-*", "latest*"])), images) == ["a"]


def test_tagged_rule_never_selects_untagged_images():
    images = [img("a", 9), img("b", 8), img("t", 1, "prod")]
    assert names(policy(rule(1, "tagged", "sinceImagePushed", n=1, patterns=["*"])), images) == []


# -- counts and ages ---------------------------------------------------------

def test_count_not_exceeded_expires_nothing():
    images = [img("a", 3), img("b", 2)]
    assert run(policy(rule(1, "untagged", n=2)), images) == []
    assert run(policy(rule(1, "untagged", n=5)), images) == []


def test_count_ties_broken_deterministically():
    same = [img("b", 1), img("a", 1), img("c", 1)]
    # equal push times: the digest orders them, the same way every time
    out = names(policy(rule(1, "untagged", n=1)), same)
    assert out == names(policy(rule(1, "untagged", n=1)), list(reversed(same)))
    assert len(out) == 2


def test_since_image_pushed_days():
    images = [img("old", 10), img("edge", 7), img("new", 6.9), img("older", 30, "v1")]
    pol = policy(rule(1, "untagged", "sinceImagePushed", n=7))
    # exactly 7 days is not "more than 7 days ago"
    assert names(pol, images) == ["old"]
    assert names(pol, images, now=NOW + 1) == ["edge", "old"]
    assert names(policy(rule(1, "any", "sinceImagePushed", n=14)), images) == ["older"]


# -- priorities --------------------------------------------------------------

def test_ecr_example_a_image_matched_by_higher_rule_is_protected():
    # The user guide's Example A: only A is expired (by rule 1); rule 2 would expire B, which
    # rule 1 selected, so it is skipped.
    images = [img("A", 10, "beta-1", "prod-1"), img("B", 9, "beta-2", "prod-2"), img("C", 8, "beta-3")]
    pol = policy(rule(1, "tagged", n=1, prefixes=["prod"]), rule(2, "tagged", n=1, prefixes=["beta"]))
    assert run(pol, images) == [("A", 1)]


def test_ecr_example_b_multiple_prefixes_in_one_rule():
    images = [img("A", 10, "alpha-1", "beta-1", "gamma-1"), img("B", 9, "alpha-2", "beta-2"),
              img("C", 8, "beta-3")]
    pol = policy(rule(1, "tagged", n=1, prefixes=["alpha", "beta"]), rule(2, "tagged", n=1, prefixes=["beta"]))
    assert run(pol, images) == [("A", 1)]


def test_images_kept_by_a_rule_still_count_for_later_rules():
    # rule 1 keeps release images forever; rule 2 counts them too ("identify them as if they
    # haven't been expired") but cannot expire them.
    images = [img("r1", 1, "release-1"), img("r2", 2, "release-2"), img("d1", 3, "dev-1"), img("u", 4)]
    pol = policy(rule(1, "tagged", n=100, prefixes=["release"]), rule(2, "any", n=2))
    assert run(pol, images) == [("u", 2), ("d1", 2)]  # oldest first


def test_rules_are_evaluated_by_priority_not_list_order():
    images = [img("a", 5, "prod-1"), img("b", 4, "prod-2"), img("c", 3, "prod-3")]
    keep_all = rule(5, "tagged", n=100, prefixes=["prod"])
    keep_one = rule(9, "tagged", n=1, patterns=["prod-*"])
    assert run(policy(keep_one, keep_all), images) == []
    keep_one_first = rule(2, "tagged", n=1, patterns=["prod-*"])
    assert run(policy(keep_all, keep_one_first), images) == [("a", 2), ("b", 2)]


def test_image_is_expired_by_at_most_one_rule():
    images = [img("a", 20, "prod-1"), img("b", 19, "prod-2"), img("c", 1, "prod-3")]
    pol = policy(rule(1, "tagged", "sinceImagePushed", n=10, prefixes=["prod"]), rule(2, "any", n=1))
    out = run(pol, images)
    assert out == [("a", 1), ("b", 1)]
    assert len({d for d, _ in out}) == len(out)


def test_untagged_then_any():
    images = [img("u1", 10), img("u2", 9), img("u3", 8), img("t1", 7, "x"), img("t2", 6, "y"), img("t3", 5, "z")]
    pol = policy(rule(1, "untagged", n=1), rule(2, "any", n=4))
    # rule 1 expires u1, u2 (u3 kept); rule 2 counts all six newest first t3 t2 t1 u3 | u2 u1 but
    # those all matched rule 1 (untagged): nothing more.
    assert run(pol, images) == [("u1", 1), ("u2", 1)]
    pol = policy(rule(1, "untagged", n=1), rule(2, "any", n=2))
    # any keeps t3, t2; t1 and u3 beyond the count; u3 matched rule 1, so only t1 goes by rule 2
    assert run(pol, images) == [("u1", 1), ("u2", 1), ("t1", 2)]


def test_policy_text_and_bytes_accepted():
    images = [img("a", 2), img("b", 1)]
    doc = policy(rule(1, "untagged", n=1))
    assert run(json.dumps(doc), images) == run(json.dumps(doc).encode(), images) == [("a", 1)]


def test_empty_repository():
    assert run(policy(rule(1, "any", n=1)), []) == []


# -- image indexes -----------------------------------------------------------

def test_child_of_a_kept_index_is_not_expired():
    images = [img("idx", 1, "v1"), img("amd64", 2, parents=["idx"]), img("arm64", 2, parents=["idx"]),
              img("stray", 3)]
    # the children are untagged and counted, but stay while the index stays
    assert names(policy(rule(1, "untagged", n=1)), images) == ["stray"]
    assert names(policy(rule(1, "untagged", "sinceImagePushed", n=1)), images) == ["stray"]


def test_children_go_with_their_index_index_first():
    images = [img("idx", 5, "old"), img("c1", 5.1, parents=["idx"]), img("c2", 5.2, parents=["idx"]),
              img("new", 1, "new")]
    out = run(policy(rule(1, "any", n=1)), images)
    assert {d for d, _ in out} == {"idx", "c1", "c2"}
    assert out[0][0] == "idx"


def test_child_shared_by_a_kept_index_stays():
    images = [img("old", 5, "a"), img("new", 1, "b"), img("shared", 6, parents=["old", "new"]),
              img("only-old", 6, parents=["old"])]
    pol = policy(rule(1, "tagged", n=1, patterns=["*"]), rule(2, "untagged", "sinceImagePushed", n=1))
    # old expired by rule 1; only-old goes with it (rule 2), after it; shared stays for new
    assert run(pol, images) == [("old", 1), ("only-old", 2)]


def test_nested_indexes_protect_transitively():
    images = [img("top", 1, "t"), img("mid", 9, parents=["top"]), img("leaf", 9, parents=["mid"])]
    assert run(policy(rule(1, "untagged", "sinceImagePushed", n=1)), images) == []


@pytest.mark.parametrize("n", [1, 2, 3])
def test_count_expires_exactly_the_oldest(n):
    images = [img(f"i{k}", k) for k in range(6)]
    assert names(policy(rule(1, "untagged", n=n)), images) == sorted(f"i{k}" for k in range(n, 6))


# -- the controller's loop (controllers/ecr_lifecycle.py), over a fake store --------

class FakeStore:
    """Answers the controller's reads and writes from a dict: repository ARN -> digests due."""

    def __init__(self, due):
        self.due = due
        self.reads, self.writes = [], []

    def read(self, fn, *args):
        from dockyard.controllers import ecr_lifecycle as c

        if fn is c.repositories_with_policy:
            return sorted(self.due)
        assert fn is c.due
        self.reads.append(args[0])
        return [(d, 1) for d in self.due.get(args[0], [])]

    async def write(self, fn, *args):
        from dockyard.controllers import ecr_lifecycle as c

        assert fn is c.apply
        self.writes.append(args[0])
        return self.due.pop(args[0], [])


def test_controller_start_events_and_sweep():
    import asyncio

    from dockyard.controllers.ecr_lifecycle import LifecycleController

    async def scenario():
        store = FakeStore({"arn:r1": ["sha256:a"], "arn:r2": []})
        ctl = LifecycleController(store, interval=0.3)  # type: ignore[arg-type]
        task = asyncio.create_task(ctl.run())
        await asyncio.sleep(0.1)
        # At start every repository with a policy is evaluated; only r1 needed a write.
        assert sorted(store.reads) == ["arn:r1", "arn:r2"] and store.writes == ["arn:r1"]
        assert ctl.expired == 1
        store.reads.clear()
        # Events: a push (key repoArn@digest) and a policy put; repeated events coalesce.
        store.due["arn:r3"] = ["sha256:x", "sha256:y"]
        ctl.on_events([("ecr-image", "arn:r3@sha256:z"), ("ecr-image", "arn:r3@sha256:w"),
                       ("ecr-lifecycle", "arn:r2"), ("task", "arn:other")])
        await asyncio.sleep(0.1)
        assert sorted(store.reads) == ["arn:r2", "arn:r3"] and store.writes == ["arn:r1", "arn:r3"]
        assert ctl.expired == 3
        store.reads.clear()
        # The sweep comes back to every repository with a policy without any event.
        await asyncio.sleep(0.4)
        assert "arn:r2" in store.reads
        task.cancel()

    asyncio.run(scenario())
