"""venvstacks.standards.requirements agrees with packaging 26.3 (the test oracle) on PEP 508 requirements."""

from __future__ import annotations

import warnings
from typing import TypeVar

import packaging.requirements as preq
import packaging.utils as putils
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from venvstacks.errors import InvalidRequirement
from venvstacks.standards.markers import Marker
from venvstacks.standards.requirements import Requirement, canonicalize_name, is_valid_project_name
from venvstacks.standards.versions import SpecifierSet

T = TypeVar("T")
SETTINGS = settings(
    max_examples=400,
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


def maybe(strategy: st.SearchStrategy[str], chance: int = 2) -> st.SearchStrategy[str]:
    """``strategy`` roughly once in ``chance`` draws, else the empty string."""
    return weighted((1, strategy), (chance - 1, st.just("")))


WS = weighted((12, st.just("")), (10, st.sampled_from([" ", "  ", "\t"])), (1, st.sampled_from(["\n", "\u00a0"])))
NAME = weighted(
    (8, st.sampled_from(["foo", "Foo_Bar", "zope.interface", "a", "A1", "foo_", "1abc"])),
    (4, st.from_regex(r"[a-zA-Z0-9][a-zA-Z0-9._-]{0,6}", fullmatch=True)),
    (1, st.sampled_from(["x-", "req.", "é", "_x", "a.é"])),
)
EXTRA = st.sampled_from(["test", "Test", "doc_s", "a.b", "c-", "x_", "security", "socks"])


@st.composite
def extras(draw: st.DrawFn) -> str:
    """'[a, b]' with random spacing, sometimes empty or malformed."""
    names = draw(st.lists(EXTRA, max_size=3))
    separators = [draw(WS) + draw(weighted((20, st.just(",")), (1, st.sampled_from(["", ",,"])))) + draw(WS) for _ in names[1:]]
    body = names[0] + "".join(s + n for s, n in zip(separators, names[1:])) if names else ""
    return "[" + draw(WS) + body + (draw(maybe(st.just(","), 20)) if names else "") + draw(WS) + draw(weighted((20, st.just("]")), (1, st.just(""))))


VERSION = weighted(
    (12, st.sampled_from(["1.0", "2.1", "1.2.3", "0.9b1", "1.0.post1", "1!2.0", "3.0.dev2", "v1.1", "1.0a", "1.0-1"])),
    (1, st.sampled_from(["1.0+local", "1.x", "", "2"])),
)
OPERATOR = weighted(
    (15, st.sampled_from(["==", "!=", ">=", "<=", ">", "<", "~=", "==="])), (1, st.sampled_from(["=>", "<>", "="]))
)


@st.composite
def specifier(draw: st.DrawFn) -> str:
    """One specifier, occasionally with a wildcard or an unusual '===' value."""
    op = draw(OPERATOR)
    version = draw(VERSION) + draw(maybe(st.just(".*"), 10))
    if op == "===" and draw(st.booleans()):
        version = draw(st.sampled_from(["foo", "1.0,>=2", "a]b", "x(y", "1.0,bad", ""]))
    return op + draw(maybe(st.sampled_from([" ", "\t", "\n"]), 8)) + version


@st.composite
def specifier_list(draw: st.DrawFn) -> str:
    """Comma-separated specifiers, sometimes in parentheses or with a trailing comma."""
    specs = draw(st.lists(specifier(), min_size=0, max_size=3))
    text = (draw(WS) + "," + draw(WS)).join(specs) + draw(maybe(st.just(","), 10))
    if draw(st.integers(0, 3)) == 0:
        text = "(" + draw(WS) + text + draw(WS) + draw(weighted((20, st.just(")")), (1, st.just(""))))
    return text


URL = st.sampled_from(
    ["https://example.com/pkg-1.0.tar.gz", "file:///tmp/x.whl", "git+https://host/a/b@v1#egg=b",
     "http://x;os_name=='a'", "./local", "C:\\pkgs\\x.whl"]
)
MARKER = weighted(
    (12, st.sampled_from(
        ["python_version >= '3.8'", "os_name=='nt'", "extra == 'Test_X'", "(os_name == 'a' or sys_platform == 'b')",
         "python_version<'3.12' and platform_machine!='arm64'", "'Dev' in dependency_groups",
         "python_full_version >= '3.14.0b1'", "os_name == \"it's\"", "os_name == '\\d'"]
    )),
    (1, st.sampled_from(["os_name == 'a' oops", "os_name == '\\x22\\x27'", ""])),
)


@st.composite
def requirement_text(draw: st.DrawFn) -> str:
    """A requirement assembled from PEP 508 parts with random whitespace."""
    text = draw(WS) + draw(NAME) + draw(WS) + draw(maybe(extras(), 3)) + draw(WS)
    if draw(st.integers(0, 3)) == 0:
        text += "@" + draw(WS) + draw(URL)
        if draw(st.booleans()):
            text += draw(WS) + ";" + draw(WS) + draw(MARKER)
    else:
        text += draw(specifier_list())
        if draw(st.booleans()):
            text += draw(WS) + ";" + draw(WS) + draw(MARKER)
    return text + draw(WS)


NOISE = st.sampled_from(list("[](),;@=<>!~ \t.*+-_'\"x1é\n") + ["and", "extra"])


@st.composite
def mutated(draw: st.DrawFn, base: st.SearchStrategy[str]) -> str:
    """``base`` with a few characters inserted, deleted or replaced."""
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


REQUIREMENT_TEXT = weighted(
    (6, requirement_text()), (3, mutated(requirement_text())), (1, st.text(max_size=15)),
    (1, st.lists(NOISE, max_size=8).map("".join)),
)


def packaging_requirement(text: str) -> preq.Requirement | Exception:
    """packaging's Requirement (with str() checked), or the exception it raised.

    Two accepted divergences, both rejected by our parser instead:
    * a marker literal holding both quote characters (packaging parses it but
      its str() raises ValueError);
    * a specifier whose version packaging itself cannot parse, such as
      '~=1.0poſt1' (matched by Unicode case folding).
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # invalid escapes such as '\d' in markers
            requirement = preq.Requirement(text)
        str(requirement)
        for spec in requirement.specifier:
            if spec.operator != "===":
                putils.Version(spec.version.removesuffix(".*"))
    except (preq.InvalidRequirement, ValueError) as exc:
        return exc
    return requirement


# ------------------------------------------------------------------- properties


@pytest.mark.slow  # hundreds of generated requirements, each also parsed by packaging
@SETTINGS
@given(REQUIREMENT_TEXT)
def test_requirement_agrees_with_packaging(text: str) -> None:
    theirs = packaging_requirement(text)
    try:
        ours: Requirement | InvalidRequirement = Requirement.parse(text)
    except InvalidRequirement as exc:
        ours = exc
    assert isinstance(ours, Requirement) == isinstance(theirs, preq.Requirement), (ours, theirs)
    if not isinstance(ours, Requirement):
        assert "\n" not in str(ours) and str(ours).startswith(f"invalid requirement {text!r}: ")
        return
    assert isinstance(theirs, preq.Requirement)
    assert str(ours) == str(theirs)
    assert (ours.name, ours.extras, ours.url) == (theirs.name, theirs.extras, theirs.url)
    assert ours.canonical_name == putils.canonicalize_name(theirs.name)
    assert str(ours.specifier) == str(theirs.specifier)
    assert str(ours.marker) == str(theirs.marker)
    assert isinstance(ours.specifier, SpecifierSet)
    assert ours.marker is None or isinstance(ours.marker, Marker)


@pytest.mark.slow  # hundreds of generated requirements, each also parsed by packaging
@settings(SETTINGS, max_examples=150)
@given(requirement_text(), requirement_text())
def test_requirement_equality_agrees_with_packaging(first: str, second: str) -> None:
    theirs = [packaging_requirement(first), packaging_requirement(second)]
    if all(isinstance(r, preq.Requirement) for r in theirs):
        ours = [Requirement.parse(first), Requirement.parse(second)]
        assert (ours[0] == ours[1]) == (theirs[0] == theirs[1])
        if ours[0] == ours[1]:
            assert hash(ours[0]) == hash(ours[1])


@pytest.mark.slow  # hundreds of generated requirements, each also parsed by packaging
@SETTINGS
@given(weighted((2, NAME), (1, st.text(max_size=10)), (1, st.lists(NOISE, max_size=6).map("".join))))
def test_names_agree_with_packaging(name: str) -> None:
    assert canonicalize_name(name) == putils.canonicalize_name(name)
    try:
        putils.canonicalize_name(name, validate=True)
    except putils.InvalidName:
        assert not is_valid_project_name(name)
    else:
        assert is_valid_project_name(name)


# --------------------------------------------------------------------- examples


@pytest.mark.parametrize(
    ("text", "normalised"),
    [
        ("requests", "requests"),
        ("  Foo_Bar [ Security , Socks ] ( >= 2.0 , < 3 ) ; python_version >= '3.8'",
         'Foo_Bar[Security,Socks]<3,>=2.0; python_version >= "3.8"'),
        ("foo[]", "foo"),
        ("foo()", "foo"),
        ("foo>=1.0,", "foo>=1.0"),
        ("foo==\n1.0", "foo==1.0"),
        ("foo @ https://example.com/foo.whl", "foo @ https://example.com/foo.whl"),
        ("foo@file:///x.whl ;os_name=='nt'", 'foo @ file:///x.whl ; os_name == "nt"'),
        ("foo @ http://x;os_name=='nt'", "foo @ http://x;os_name=='nt'"),
        ("foo_", "foo_"),
        ("foo===1.0,>=2", "foo===1.0,>=2"),
        ("foo; extra == 'Test_Extra'", 'foo; extra == "test-extra"'),
    ],
    ids=["plain", "everything", "empty-extras", "empty-parens", "trailing-comma", "newline-in-specifier",
         "url", "url-marker", "url-swallows-semicolon", "trailing-underscore", "arbitrary-equality",
         "extra-normalised"],
)
def test_requirement_examples(text: str, normalised: str) -> None:
    assert str(Requirement.parse(text)) == normalised == str(preq.Requirement(text))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name<>", "invalid requirement 'name<>': invalid specifier '<>': unknown operator '<>'"
                   " (did you mean '!='?) at column 5"),
        ("", "invalid requirement '': expected a project name at the start of the requirement, found the end"
             " at column 1"),
        ("foo bar", "invalid requirement 'foo bar': expected '[extras]', a version specifier, '@ URL',"
                    " ';' and a marker or the end, found 'bar' at column 5"),
        ("foo>=1.0.*", "invalid requirement 'foo>=1.0.*': invalid specifier '>=1.0.*': a '.*' wildcard is only"
                       " allowed with '==' and '!=' at column 4"),
        ("foo~=1", "invalid requirement 'foo~=1': invalid specifier '~=1': '~=' needs at least two release"
                   " components, such as '~=1.4' at column 4"),
        ("foo>=1 <2", "invalid requirement 'foo>=1 <2': expected ',' and another specifier, ';' and a marker"
                      " or the end, found '<2' at column 8"),
        ("foo[a b]", "invalid requirement 'foo[a b]': expected ',' between extra names, found 'b]' at column 7"),
        ("foo[a", "invalid requirement 'foo[a': expected ']' to close the '[' at column 4, found the end"
                  " at column 6"),
        ("foo (>=1", "invalid requirement 'foo (>=1': expected ')' to close the '(' at column 5, found the end"
                     " at column 9"),
        ("foo @ ", "invalid requirement 'foo @ ': expected a URL after '@', found the end at column 7"),
        ("foo @ u os_name", "invalid requirement 'foo @ u os_name': expected ';' and a marker after the URL"
                            " and a space or the end, found 'os_name' at column 9"),
        ("foo===1.0,bad", "invalid requirement 'foo===1.0,bad': invalid specifier 'bad': expected an operator"
                          " (~=, ==, !=, <=, >=, <, >, ===) before the version at column 4"),
        ("foo; os_name = 'a'", "invalid requirement \"foo; os_name = 'a'\": expected a marker operator"
                               " (<, <=, !=, ==, >=, >, ~=, ===, in, not in), found \"= 'a'\" at column 14"),
        ("foo\n", "invalid requirement 'foo\\n': expected '[extras]', a version specifier, '@ URL',"
                  " ';' and a marker or the end, found '\\n' at column 4"),
    ],
    ids=["bad-operator", "empty", "two-names", "ordered-wildcard", "compatible-one-part", "missing-comma",
         "extras-missing-comma", "unclosed-extras", "unclosed-parens", "missing-url", "url-then-junk",
         "arbitrary-swallowed-comma", "bad-marker", "trailing-newline"],
)
def test_requirement_errors(text: str, message: str) -> None:
    with pytest.raises(InvalidRequirement) as info:
        Requirement.parse(text)
    assert str(info.value) == message
    with pytest.raises(preq.InvalidRequirement):
        preq.Requirement(text)


def test_requirement_fields() -> None:
    req = Requirement.parse("Zope.Interface[Test,docs]>=5,!=5.1; python_version >= '3.8'")
    assert (req.name, req.canonical_name, req.extras) == ("Zope.Interface", "zope-interface", {"Test", "docs"})
    assert str(req.specifier) == "!=5.1,>=5" and req.url is None
    assert req.marker == Marker.parse('python_version>="3.8"')
    assert req == Requirement.parse("zope_interface[test,DOCS]>=5.0,!=5.1;python_version>='3.8'")
    assert hash(req) == hash(Requirement.parse("zope_interface[test,DOCS]>=5.0,!=5.1;python_version>='3.8'"))
    with pytest.raises(AttributeError):
        req.name = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("name", "canonical", "valid"),
    [("Django", "django", True), ("oslo.concurrency", "oslo-concurrency", True), ("a__b--c..d", "a-b-c-d", True),
     ("_not_legal", "-not-legal", False), ("x-", "x-", False), ("", "", False), ("é", "é", False)],
    ids=lambda value: repr(value),
)
def test_name_examples(name: str, canonical: str, valid: bool) -> None:
    assert canonicalize_name(name) == canonical and is_valid_project_name(name) is valid
