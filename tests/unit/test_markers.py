"""venvstacks.standards.markers agrees with packaging 26.3 (the test oracle) on PEP 508 markers."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from collections.abc import Set as AbstractSet
from typing import TypeVar

import packaging.markers as pmark
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from venvstacks.errors import InvalidMarker, UndefinedEnvironmentName
from venvstacks.standards.markers import Comparison, Group, Marker, Value, Variable, default_environment

T = TypeVar("T")
SETTINGS = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

# ---------------------------------------------------------------- strategies


def weighted(*choices: tuple[int, st.SearchStrategy[T]]) -> st.SearchStrategy[T]:
    """Draw from one of the strategies, picked in proportion to its weight."""
    pool = [strategy for weight, strategy in choices for _ in range(weight)]
    return st.sampled_from(pool).flatmap(lambda strategy: strategy)


VERSION_VARIABLES = ["python_version", "python_full_version", "implementation_version", "platform_release"]
NAME_VARIABLES = [
    "os_name", "os.name", "sys_platform", "sys.platform", "platform_system", "platform_version",
    "platform.version", "platform_machine", "platform.machine", "platform_python_implementation",
    "platform.python_implementation", "python_implementation", "implementation_name",
]
SET_VARIABLES = ["extras", "dependency_groups"]
VERSION_VALUES = [
    "3.8", "3.11", "3.12", "3.14", "3.14.0b1", "3.14.0", "3.11.7", "3", "3.*", "3.1*", "2.7.18",
    "7.3", "6.8.0", "10", "23.1.0", " 3.12", "3.12 ", "abc", "", "3.13.0+local", "1.0.post1",
]
NAME_VALUES = [
    "linux", "win32", "darwin", "posix", "nt", "Linux", "Windows", "Darwin", "CPython", "PyPy",
    "cpython", "pypy", "x86_64", "arm64", "AMD64", "lin", "", "#1 SMP",
]
EXTRA_VALUES = ["test", "Test", "Foo_Bar", "foo-bar", "doc.s", "dev", "", "a__b"]
TRICKY_VALUES = [
    "it's", 'say "hi"', "\\d", "\\\\", "\\n", "\\x41", "\\N{EM DASH}", "\\777", "\\u00e9", "\\U0001F600",
    "\\x4", "\\N{NOT A NAME}", "\\", "tab\there", "é", "\\\n", "\\'", '\\"', "\\0", "\\8",
]
WS = st.sampled_from(["", " ", " ", "  ", "\t"])


@st.composite
def quoted(draw: st.DrawFn, values: list[str]) -> str:
    """A quoted literal, picking a quote character the text does not contain (mostly)."""
    text = draw(weighted((8, st.sampled_from(values)), (1, st.sampled_from(TRICKY_VALUES)), (1, st.text(max_size=5))))
    quote = draw(st.sampled_from(["'", '"']))
    if quote in text and draw(st.integers(0, 4)):
        quote = "'" if quote == '"' else '"'
    return f"{quote}{text}{quote}"


@st.composite
def comparison(draw: st.DrawFn) -> str:
    """``variable op literal`` in either order (sometimes two variables or two literals)."""
    kind = draw(st.sampled_from(["version"] * 3 + ["name"] * 3 + ["extra", "set"]))
    if kind == "version":
        variable, values = draw(st.sampled_from(VERSION_VARIABLES)), VERSION_VALUES
    elif kind == "name":
        variable, values = draw(st.sampled_from(NAME_VARIABLES)), NAME_VALUES
    elif kind == "extra":
        variable, values = "extra", EXTRA_VALUES
    else:
        variable, values = draw(st.sampled_from(SET_VARIABLES)), EXTRA_VALUES
    op = draw(
        st.sampled_from(["==", "!=", "<", "<=", ">", ">=", "~=", "===", "in", "not in", "not  in", "not\tin"])
    )
    left, right = variable, draw(quoted(values))
    shape = draw(st.sampled_from(["var-lit"] * 6 + ["lit-var"] * 3 + ["var-var", "lit-lit"]))
    if shape == "lit-var":
        left, right = right, left
    elif shape == "var-var":
        right = draw(st.sampled_from(VERSION_VARIABLES + NAME_VARIABLES + SET_VARIABLES + ["extra"]))
    elif shape == "lit-lit":
        left, right = draw(quoted(values)), draw(st.sampled_from(['"python_version"', "'os_name'", '"nope"']))
    return f"{left}{draw(WS)}{op}{draw(WS)}{right}"


def expression(depth: int) -> st.SearchStrategy[str]:
    """Comparisons joined with and/or, with optional parentheses and whitespace."""
    atom: st.SearchStrategy[str] = comparison()
    if depth > 0:
        atom = weighted(
            (3, comparison()),
            (1, st.tuples(WS, expression(depth - 1), WS).map(lambda p: f"({p[0]}{p[1]}{p[2]})")),
        )
    return st.lists(st.tuples(WS, atom, WS, st.sampled_from(["and", "or"])), min_size=1, max_size=3).map(
        lambda items: "".join(f"{a}{b}{c}{op if i < len(items) - 1 else ''}" for i, (a, b, c, op) in enumerate(items))
    )


NOISE = st.sampled_from(list("()'\" =<>!~.;_\tx\n\\") + ["and", "or", "in", "not", "os_name", "é", "ſ"])


@st.composite
def mutated(draw: st.DrawFn, base: st.SearchStrategy[str]) -> str:
    """``base`` with a few characters or words inserted, deleted or replaced."""
    text = draw(base)
    for _ in range(draw(st.integers(1, 3))):
        index = draw(st.integers(0, len(text)))
        action = draw(st.sampled_from(["insert", "delete", "replace"]))
        if action == "insert" or not text:
            text = text[:index] + draw(NOISE) + text[index:]
        elif action == "delete":
            text = text[:index] + text[index + 1 :]
        else:
            text = text[:index] + draw(NOISE) + text[index + 1 :]
    return text


MARKER_TEXT = weighted(
    (6, expression(2)), (3, mutated(expression(1))), (1, st.text(max_size=15)), (1, st.lists(NOISE, max_size=8).map("".join))
)


def environment(**changes: str | AbstractSet[str]) -> dict[str, str | AbstractSet[str]]:
    """A complete marker environment (Linux, CPython 3.11.7) with ``changes`` applied."""
    base: dict[str, str | AbstractSet[str]] = {
        "implementation_name": "cpython",
        "implementation_version": "3.11.7",
        "os_name": "posix",
        "platform_machine": "x86_64",
        "platform_release": "6.8.0-45-generic",
        "platform_system": "Linux",
        "platform_version": "#45-Ubuntu SMP PREEMPT_DYNAMIC",
        "python_full_version": "3.11.7",
        "platform_python_implementation": "CPython",
        "python_version": "3.11",
        "sys_platform": "linux",
    }
    return base | changes


ENVIRONMENTS = [
    environment(),
    environment(extra="Foo_Bar"),
    environment(
        python_version="3.14", python_full_version="3.14.0b1", implementation_version="3.14.0b1", extra="test"
    ),
    environment(
        os_name="nt", sys_platform="win32", platform_system="Windows", platform_machine="AMD64",
        platform_release="10", platform_version="10.0.22631", python_version="3.12",
        python_full_version="3.12.1", implementation_version="3.12.1",
    ),
    environment(
        sys_platform="darwin", platform_system="Darwin", platform_machine="arm64", platform_release="23.1.0",
        python_version="3.13", python_full_version="3.13.0+", implementation_version="3.13.0",
        extras=frozenset({"test", "Foo_Bar"}), dependency_groups=frozenset({"dev"}),
    ),
    environment(
        implementation_name="pypy", implementation_version="7.3.13", platform_python_implementation="PyPy",
        python_version="3.10", python_full_version="3.10.13", extra="doc.s",
    ),
]


def outcome(evaluate: Callable[[], bool], undefined: type[Exception], comparison: type[Exception]) -> object:
    """The result of an evaluation, or the kind of error it raised."""
    try:
        return evaluate()
    except undefined:
        return "undefined variable"
    except comparison:
        return "undefined comparison"


def packaging_marker(text: str) -> pmark.Marker | Exception:
    """packaging's Marker (its str() checked), or the exception it raised.

    Invalid escapes such as "\\d" warn when compiled; packaging's lenient result
    is what users see, so the warnings are silenced here.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            marker = pmark.Marker(text)
        str(marker)
    except (pmark.InvalidMarker, ValueError) as exc:
        # ValueError: packaging parses a literal holding both quote characters
        # but cannot serialise it; we reject such markers when parsing.
        return exc
    return marker


# ------------------------------------------------------------------- properties


@pytest.mark.slow  # hundreds of generated markers, each also parsed by packaging
@SETTINGS
@given(MARKER_TEXT)
def test_marker_agrees_with_packaging(text: str) -> None:
    theirs = packaging_marker(text)
    try:
        ours: Marker | InvalidMarker = Marker.parse(text)
    except InvalidMarker as exc:
        ours = exc
    assert isinstance(ours, Marker) == isinstance(theirs, pmark.Marker), (ours, theirs)
    if not isinstance(ours, Marker):
        assert "\n" not in str(ours) and repr(text) in str(ours)
        return
    assert isinstance(theirs, pmark.Marker)
    assert str(ours) == str(theirs)
    # The text does not always round-trip (backslashes are not escaped), but
    # re-parsing it behaves as it does in packaging.
    again = packaging_marker(str(theirs))
    if isinstance(again, pmark.Marker):
        assert str(Marker.parse(str(ours))) == str(again)
        if str(again) == str(theirs):
            assert Marker.parse(str(ours)) == ours and hash(Marker.parse(str(ours))) == hash(ours)
    else:
        with pytest.raises(InvalidMarker):
            Marker.parse(str(ours))
    for env in ENVIRONMENTS:
        try:
            expected = outcome(lambda env=env: theirs.evaluate(env), pmark.UndefinedEnvironmentName, pmark.UndefinedComparison)
        except AssertionError:
            # packaging accepts specifiers such as '~=1.0poſt1' that it cannot
            # evaluate; we reject them as specifiers, so the comparison is undefined.
            expected = "undefined comparison"
        actual = outcome(lambda env=env: ours.evaluate(env), UndefinedEnvironmentName, InvalidMarker)
        assert actual == expected, env


@pytest.mark.slow  # hundreds of generated markers, each also parsed by packaging
@settings(SETTINGS, max_examples=100)
@given(st.lists(expression(1), min_size=2, max_size=2))
def test_marker_equality_agrees_with_packaging(texts: list[str]) -> None:
    theirs = [packaging_marker(t) for t in texts]
    if all(isinstance(m, pmark.Marker) for m in theirs):
        ours = [Marker.parse(t) for t in texts]
        assert (ours[0] == ours[1]) == (theirs[0] == theirs[1])


# --------------------------------------------------------------------- examples


@pytest.mark.parametrize(
    ("text", "normalised"),
    [
        ("os_name=='posix'", 'os_name == "posix"'),
        ("os.name == 'nt'", 'os_name == "nt"'),
        ("python_implementation == 'CPython'", 'platform_python_implementation == "CPython"'),
        ("platform.python_implementation=='PyPy'", 'platform_python_implementation == "PyPy"'),
        ("(os_name == 'a')", 'os_name == "a"'),
        ("(a_b == 'x')".replace("a_b", "os_name") + " and ((sys_platform == 'y' or sys_platform == 'z'))",
         'os_name == "x" and (sys_platform == "y" or sys_platform == "z")'),
        ("(os_name == 'a' and os_name == 'b') or os_name == 'c'",
         '(os_name == "a" and os_name == "b") or os_name == "c"'),
        ("extra == 'Foo_Bar.baz'", 'extra == "foo-bar-baz"'),
        ("'Dev_Tools' in dependency_groups", '"dev-tools" in dependency_groups'),
        ("os_name == \"it's\"", "os_name == \"it's\""),
        ("os_name == 'say \"hi\"'", "os_name == 'say \"hi\"'"),
        ("python_version not \t in '2.7, 3.4'", 'python_version not in "2.7, 3.4"'),
    ],
    ids=["quotes", "legacy-os-name", "legacy-implementation", "legacy-dotted", "redundant-parens",
         "nested-parens", "kept-parens", "extra", "group", "apostrophe", "double-quotes", "not-in"],
)
def test_marker_str_examples(text: str, normalised: str) -> None:
    assert str(Marker.parse(text)) == normalised == str(pmark.Marker(text))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "invalid marker '': expected a marker variable (such as python_version) or a quoted string,"
             " found the end at column 1"),
        ("os_name <> 'a'", "invalid marker \"os_name <> 'a'\": expected a marker operator"
                           " (<, <=, !=, ==, >=, >, ~=, ===, in, not in), found \"<> 'a'\" at column 9"),
        ("(os_name == 'a'", "invalid marker \"(os_name == 'a'\": expected ')' to close the '(' at column 1,"
                            " found the end at column 16"),
        ("os_name == 'a' andd os_name == 'b'", "invalid marker \"os_name == 'a' andd os_name == 'b'\":"
                                               " expected 'and', 'or' or the end of the marker, found 'andd os_name' at column 16"),
        ("os_name == '\\x4'", "invalid marker \"os_name == '\\\\x4'\": invalid quoted string \"'\\\\x4'\" at column 12"),
        ("os_name == '\\x22\\x27'", "invalid marker \"os_name == '\\\\x22\\\\x27'\": quoted string \"'\\\\x22\\\\x27'\""
                                    " holds both kinds of quote at column 12"),
        ("os_name == 'a'\n", "invalid marker \"os_name == 'a'\\n\": expected 'and', 'or' or the end of the marker,"
                             " found '\\n' at column 15"),
    ],
    ids=["empty", "bad-operator", "unclosed", "bad-boolean", "bad-escape", "both-quotes", "newline"],
)
def test_marker_errors(text: str, message: str) -> None:
    with pytest.raises(InvalidMarker) as info:
        Marker.parse(text)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        ("python_version >= '3.8'", {"python_version": "3.11"}, True),
        ("python_version < '3.14'", {"python_version": "3.14"}, False),
        ("python_full_version >= '3.14.0b1'", {"python_full_version": "3.14.0b1"}, True),
        ("python_full_version > '3.14'", {"python_full_version": "3.14.0b1"}, False),
        ("python_full_version == '3.13.0+local'", {"python_full_version": "3.13.0+"}, True),
        ("python_version == '3.*'", {"python_version": "3.12"}, True),
        ("'3.8' <= python_version", {"python_version": "3.11"}, True),
        ("platform_release >= '5.0'", {"platform_release": "6.8.0-45-generic"}, False),
        ("os_name >= 'posix'", {"os_name": "posix"}, True),
        ("os_name > 'nt'", {"os_name": "posix"}, False),
        ("'lin' in sys_platform", {"sys_platform": "linux"}, True),
        ("extra == 'Foo.Bar'", {"extra": "foo_bar"}, True),
        ("extra == 'test'", {}, False),
        ("'Foo_Bar' in extras", {"extras": frozenset({"foo-bar"})}, True),
        ("os_name == 'nt' or os_name == 'posix' and sys_platform == 'linux'",
         {"os_name": "posix", "sys_platform": "linux"}, True),
    ],
    ids=["ge", "lt", "prerelease", "gt-prerelease", "untagged-build", "wildcard", "reversed",
         "unparsable-release", "string-ge", "string-gt", "in", "extra", "extra-default", "extras-set",
         "and-binds-tighter"],
)
def test_evaluate_examples(text: str, env: dict[str, str | AbstractSet[str]], expected: bool) -> None:
    assert Marker.parse(text).evaluate(env) is expected
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        full_env: Mapping[str, str | AbstractSet[str]] = environment() | env
    assert pmark.Marker(text).evaluate(full_env) is expected


def test_evaluate_errors() -> None:
    marker = Marker.parse("os_name == 'posix' and platform_machine == 'x86_64'")
    with pytest.raises(UndefinedEnvironmentName) as info:
        marker.evaluate({"os_name": "posix"})
    assert str(info.value) == (
        "cannot evaluate marker 'os_name == \"posix\" and platform_machine == \"x86_64\"':"
        " the environment does not define 'platform_machine'"
    )
    with pytest.raises(InvalidMarker, match="'~=' needs PEP 440 versions, got 'posix' and 'a'"):
        Marker.parse("os_name ~= 'a'").evaluate({"os_name": "posix"})
    with pytest.raises(InvalidMarker, match="holds a set"):
        Marker.parse("extras == 'a'").evaluate({"extras": frozenset({"a"})})


def test_default_environment_matches_packaging() -> None:
    assert default_environment() == pmark.default_environment()
    assert Marker.parse("python_version >= '3.11'").evaluate() is True


def test_marker_tree_is_immutable() -> None:
    marker = Marker.parse("os_name == 'a' and (extra == 'B' or 'x' in sys_platform)")
    assert marker.tree == Group(
        (
            Comparison(Variable("os_name"), "==", Value("a")),
            "and",
            Group(
                (
                    Comparison(Variable("extra"), "==", Value("b")),
                    "or",
                    Comparison(Value("x"), "in", Variable("sys_platform")),
                )
            ),
        )
    )
    with pytest.raises(AttributeError):
        marker.tree = Group(())  # type: ignore[misc]
    assert len({marker, Marker.parse(str(marker))}) == 1
