"""The cluster query language: parsing, every subject and operator, compound expressions."""

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dockyard.scheduler.query import InstanceFacts, QuerySyntaxError, compile_query


def facts(**kw):
    base = {
        "agent_connected": True,
        "agent_version": "1.14.5",
        "attributes": {
            "ecs.instance-type": "t2.small",
            "ecs.availability-zone": "us-east-1a",
            "ecs.os-type": "linux",
            "stack": "prod",
            "size": "10",
            "com.amazonaws.ecs.capability.privileged-container": None,
        },
        "ec2_instance_id": "i-abcd1234",
        "registered_at": datetime(2018, 6, 18, 22, 28, 28, tzinfo=UTC).timestamp(),
        "running_tasks_count": 1,
        "task_groups": frozenset({"service:production", "family:web"}),
    }
    base.update(kw)
    return InstanceFacts(**base)


def ev(expr, **kw):
    return compile_query(expr)(facts(**kw))


# -- the documented examples --------------------------------------------------------

@pytest.mark.parametrize("expr,expected", [
    ("attribute:ecs.instance-type == t2.small", True),
    ("attribute:ecs.instance-type == t2.micro", False),
    ("attribute:ecs.availability-zone in [us-east-1a, us-east-1b]", True),
    ("attribute:ecs.availability-zone in [us-east-1c, us-east-1d]", False),
    ("attribute:ecs.instance-type =~ t2.* and attribute:ecs.availability-zone != us-east-1d", True),
    ("attribute:ecs.instance-type =~ g2.* and attribute:ecs.availability-zone != us-east-1d", False),
    ("task:group == service:production", True),
    ("not(task:group == database)", True),
    ("runningTasksCount == 1", True),
    ("agentVersion < 1.14.5", False),
    ("registeredAt < 2018-02-13", False),
    ("ec2InstanceId in ['i-abcd1234', 'i-wxyx7890']", True),
    (("(attribute:ecs.instance-type == t2.small or attribute:ecs.instance-type == t2.medium) and "
     "attribute:ecs.availability-zone == us-east-1a"), True),
])
def test_documented_examples(expr, expected):
    assert ev(expr) is expected


# -- operators, symbol and word forms --------------------------------------------------

@pytest.mark.parametrize("sym,word", [
    ("==", "equals"), ("!=", "not_equals"), (">", "greater_than"), (">=", "greater_than_equal"),
    ("<", "less_than"), ("<=", "less_than_equal"), ("=~", "matches"), ("!~", "not_matches"),
])
def test_word_forms_match_symbols(sym, word):
    for value in ("0", "1", "2"):
        a = ev(f"runningTasksCount {sym} {value}")
        b = ev(f"runningTasksCount {word} {value}")
        assert a is b


def test_numeric_comparisons():
    assert ev("runningTasksCount > 0")
    assert ev("runningTasksCount >= 1")
    assert not ev("runningTasksCount > 1")
    assert ev("runningTasksCount <= 1")
    assert not ev("runningTasksCount < 1")
    assert ev("runningTasksCount != 3")
    assert ev("runningTasksCount == 10", running_tasks_count=10)  # numbers, not text ("10" < "9")
    assert ev("runningTasksCount > 9", running_tasks_count=10)


def test_exists_and_not_exists():
    assert ev("attribute:stack exists")
    assert ev("attribute:com.amazonaws.ecs.capability.privileged-container exists")  # no value
    assert not ev("attribute:nope exists")
    assert ev("attribute:nope !exists")
    assert ev("attribute:nope not_exists")
    assert not ev("attribute:stack !exists")
    assert ev("ec2InstanceId exists")
    assert not ev("ec2InstanceId exists", ec2_instance_id=None)
    assert ev("task:group exists")
    assert not ev("task:group exists", task_groups=frozenset())


def test_in_and_not_in():
    assert ev("attribute:stack in [prod, test]")
    assert not ev("attribute:stack !in [prod, test]")
    assert ev("attribute:stack not_in [dev, test]")
    assert ev("attribute:stack in ['prod']")
    assert ev('attribute:stack in ["prod"]')
    assert not ev("attribute:stack in []")


def test_regex_is_a_whole_match():
    assert ev("attribute:ecs.instance-type =~ t2\\..*")
    assert not ev("attribute:ecs.instance-type =~ t2")  # not a prefix search
    assert ev("attribute:ecs.instance-type !~ m5.*")
    assert ev("ec2InstanceId matches i-[0-9a-f]+")
    assert ev("attribute:ecs.instance-type not_matches 'c5.*'")


def test_missing_subject_satisfies_only_negative_operators():
    for op in ("==", ">", ">=", "<", "<=", "=~"):
        assert not ev(f"attribute:missing {op} 1")
    assert not ev("attribute:missing in [a]")
    assert ev("attribute:missing != 1")
    assert ev("attribute:missing !in [a]")
    assert ev("attribute:missing !~ a.*")
    assert not ev("ec2InstanceId == i-1", ec2_instance_id=None)


def test_attribute_comparison_numeric_when_both_numbers():
    assert ev("attribute:size > 9")  # 10 > 9, not "10" < "9"
    assert ev("attribute:size == 10")
    assert ev("attribute:stack > pre")  # text otherwise
    assert not ev("attribute:stack < pre")


def test_agent_version_compares_numerically():
    assert ev("agentVersion > 1.9.0")  # 1.14.5 > 1.9.0 (text would say no)
    assert ev("agentVersion >= 1.14.5")
    assert ev("agentVersion == 1.14.5")
    assert ev("agentVersion < 1.15")
    assert ev("agentVersion == 1.14.0", agent_version="1.14")
    assert ev("agentVersion in [1.14.5, 1.15.0]")
    assert not ev("agentVersion > 1.0", agent_version=None)


def test_agent_connected():
    assert ev("agentConnected == true")
    assert not ev("agentConnected == false")
    assert ev("agentConnected == false", agent_connected=False)
    assert ev("agentConnected != TRUE", agent_connected=False)
    with pytest.raises(QuerySyntaxError):
        compile_query("agentConnected == maybe")
    with pytest.raises(QuerySyntaxError):
        compile_query("agentConnected > true")


def test_registered_at_dates():
    assert ev("registeredAt > 2018-06-18")
    assert ev("registeredAt < 2018-06-19")
    assert ev("registeredAt > 2018-06-18T22:28:27Z")
    assert ev("registeredAt <= 2018-06-18T22:28:28+00:00")
    assert not ev("registeredAt > 2018-06-18T22:28:28+00:00")
    assert ev("registeredAt < 2018-06-18T23:28:28+00:00")
    assert ev("registeredAt > 2018-06-18T23:00:00+01:00")
    with pytest.raises(QuerySyntaxError):
        compile_query("registeredAt > yesterday")


def test_task_group_is_a_set():
    assert ev("task:group == family:web")
    assert ev("task:group != database")
    assert not ev("task:group != family:web")  # one of its groups is family:web
    assert ev("task:group in [database, family:web]")
    assert ev("task:group !in [database]")
    assert ev("task:group =~ service:.*")
    assert not ev("task:group !~ service:.*")
    assert not ev("task:group == database", task_groups=frozenset())
    assert ev("task:group != database", task_groups=frozenset())
    with pytest.raises(QuerySyntaxError):
        compile_query("task:group > a")


def test_uses_task_group_flag():
    assert compile_query("task:group == x").uses_task_group
    assert compile_query("attribute:a == b or not task:group == x").uses_task_group
    assert not compile_query("attribute:a == b").uses_task_group


# -- connectives and precedence ------------------------------------------------------------

def test_and_or_not_forms():
    t = "attribute:stack == prod"
    f = "attribute:stack == dev"
    assert ev(f"{t} && {t}") and ev(f"{t} and {t}") and ev(f"{t} AND {t}")
    assert not ev(f"{t} && {f}")
    assert ev(f"{f} || {t}") and ev(f"{f} or {t}")
    assert not ev(f"{f} || {f}")
    assert ev(f"!{f}") and ev(f"! {f}") and ev(f"not {f}") and ev(f"not({f})") and ev(f"!({f})")
    assert not ev(f"not not {f}")


def test_and_binds_tighter_than_or():
    t = "attribute:stack == prod"
    f = "attribute:stack == dev"
    assert ev(f"{t} or {f} and {f}")  # t or (f and f)
    assert not ev(f"({t} or {f}) and {f}")
    assert ev(f"{f} and {f} or {t}")


def test_nested_parentheses_and_no_spaces():
    assert ev("((attribute:stack==prod)&&(runningTasksCount<2))||agentConnected==false")
    assert ev("attribute:stack==prod&&runningTasksCount==1")
    assert not ev("attribute:stack==prod&&runningTasksCount==2")


def test_keywords_are_not_prefixes_of_values():
    # "android" and "order" must be read as values, not as "and"/"or".
    assert ev("attribute:os == android", attributes={"os": "android"})
    assert ev("attribute:os == order or attribute:os == x", attributes={"os": "order"})


def test_quoted_values_can_hold_spaces_and_parentheses():
    attrs = {"label": "a b (c)"}
    assert ev("attribute:label == 'a b (c)'", attributes=attrs)
    assert ev('(attribute:label == "a b (c)")', attributes=attrs)


def test_subject_case_is_forgiven_and_attribute_name_case_is_kept():
    assert ev("RUNNINGTASKSCOUNT == 1")
    assert not ev("attribute:STACK == prod")


# -- errors --------------------------------------------------------------------------------

@pytest.mark.parametrize("expr", [
    "", "   ", "foo == bar", "attribute: == x", "attribute:stack", "attribute:stack ==",
    "attribute:stack in prod", "attribute:stack in [a, b", "(attribute:stack == prod",
    "attribute:stack == prod)", "attribute:stack == prod and", "attribute:stack == prod or or x == y",
    "attribute:stack =~ '('", "attribute:stack == 'unterminated", "runningTasksCount > many",
    "agentVersion > x.y", "attribute:stack ~= prod", "and attribute:stack == prod",
])
def test_syntax_errors(expr):
    with pytest.raises(QuerySyntaxError):
        compile_query(expr)


def test_too_long():
    expr = " or ".join(["attribute:stack == prod"] * 100)
    assert len(expr) > 2000
    with pytest.raises(QuerySyntaxError):
        compile_query(expr)


def test_compiled_once_and_reused():
    assert compile_query("runningTasksCount == 1") is compile_query("runningTasksCount == 1")


# -- properties -------------------------------------------------------------------------------

ATOMS = ["attribute:stack == prod", "attribute:stack == dev", "runningTasksCount > 0", "runningTasksCount > 5",
         "task:group == family:web", "attribute:nope exists", "agentConnected == true", "agentVersion < 1.2"]
_atoms = st.sampled_from(ATOMS)


@st.composite
def _expr(draw, depth=0):
    if depth > 3 or draw(st.booleans()):
        a = draw(_atoms)
        return a, a
    kind = draw(st.sampled_from(["and", "or", "not"]))
    if kind == "not":
        text, py = draw(_expr(depth + 1))
        return f"not ({text})", f"(not {py})"
    lt, lp = draw(_expr(depth + 1))
    rt, rp = draw(_expr(depth + 1))
    op = draw(st.sampled_from([kind, {"and": "&&", "or": "||"}[kind]]))
    return f"({lt}) {op} ({rt})", f"({lp} {kind} {rp})"


@given(_expr())
def test_compound_expressions_follow_boolean_logic(pair):
    text, py = pair
    f = facts()
    truth = {a: compile_query(a)(f) for a in ATOMS}
    # Replace atoms by their truth values, longest first so no atom is a part of another.
    for a in sorted(ATOMS, key=len, reverse=True):
        py = py.replace(a, str(truth[a]))
    assert compile_query(text)(f) is eval(py)  # the oracle: True/False with and/or/not
