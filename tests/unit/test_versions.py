"""venvstacks.standards.versions agrees with packaging 26.3 (the test oracle) on PEP 440."""

from __future__ import annotations

import itertools
import operator
from collections.abc import Callable
from typing import TypeVar

import packaging.specifiers as pspec
import packaging.version as pver
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from venvstacks.errors import InvalidSpecifier, InvalidVersion
from venvstacks.standards.versions import Specifier, SpecifierSet, Version

T = TypeVar("T")
SETTINGS = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

# ---------------------------------------------------------------- strategies


def cased(word: str) -> st.SearchStrategy[str]:
    """``word`` in lower, upper or title case."""
    return st.sampled_from([word, word.upper(), word.title()])


NUMBER = st.integers(0, 12).map(str) | st.sampled_from(["00", "01", "007", "10", "2024"])
SEP = st.sampled_from(["", "", ".", "-", "_"])
# Version strings may be wrapped in any (Unicode) whitespace.
OUTER_WS = st.sampled_from(["", "", "", " ", "\t", "\n ", "\u00a0", "\u2003"])
PRE_WORDS = ["a", "alpha", "b", "beta", "c", "rc", "pre", "preview"]
POST_WORDS = ["post", "rev", "r"]


def weighted(*choices: tuple[int, st.SearchStrategy[T]]) -> st.SearchStrategy[T]:
    """Draw from one of the strategies, picked in proportion to its weight."""
    pool = [strategy for weight, strategy in choices for _ in range(weight)]
    return st.sampled_from(pool).flatmap(lambda strategy: strategy)


def maybe(strategy: st.SearchStrategy[str], chance: int = 3) -> st.SearchStrategy[str]:
    """``strategy`` roughly once in ``chance`` draws, else the empty string."""
    return st.integers(1, chance).flatmap(lambda n: strategy if n == 1 else st.just(""))


def joined(*parts: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """Concatenate the strings drawn from ``parts``."""
    return st.tuples(*parts).map("".join)


PRE = joined(SEP, st.sampled_from(PRE_WORDS).flatmap(cased), SEP, maybe(NUMBER, 2))
POST = st.one_of(
    joined(st.just("-"), NUMBER),
    joined(SEP, st.sampled_from(POST_WORDS).flatmap(cased), SEP, maybe(NUMBER, 2)),
)
DEV = joined(SEP, cased("dev"), SEP, maybe(NUMBER, 2))
LOCAL_SEGMENT = st.sampled_from(["abc", "Ubuntu", "1", "01", "x2", "7z"])
LOCAL = st.lists(LOCAL_SEGMENT, min_size=1, max_size=3).flatmap(
    lambda segs: st.lists(st.sampled_from(".-_"), min_size=len(segs) - 1, max_size=len(segs) - 1).map(
        lambda seps: "+" + segs[0] + "".join(s + g for s, g in zip(seps, segs[1:]))
    )
)
RELEASE = st.lists(NUMBER, min_size=1, max_size=4).map(".".join)
PUBLIC_VERSION = joined(
    maybe(st.sampled_from(["v", "V"]), 4), maybe(joined(NUMBER, st.just("!")), 4), RELEASE,
    maybe(PRE), maybe(POST), maybe(DEV),
)
VERSION = joined(PUBLIC_VERSION, maybe(LOCAL, 4))

NOISE = st.sampled_from(list("0123456789.-_+!*vVaAbBcrRpostdevl ~=<>,;()[]@'\"\\\t\n") + ["ı", "ſ", "K", "é"])


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


def noisy(base: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """Mostly well-formed text from ``base``, plus mutations and garbage."""
    return weighted((6, base), (2, mutated(base)), (1, st.text(max_size=12)), (1, st.text(NOISE, max_size=12)))


VERSION_TEXT = noisy(joined(OUTER_WS, VERSION, OUTER_WS))


def is_valid_version(text: str) -> bool:
    """Whether packaging accepts ``text`` as a version."""
    try:
        pver.Version(text)
    except pver.InvalidVersion:
        return False
    return True


VALID_VERSION = VERSION.filter(is_valid_version)

OPS = ["~=", "==", "!=", "<=", ">=", "<", ">", "==="]
SPEC_WS = st.sampled_from(["", "", "", " ", "  ", "\t", "\n"])
WILDCARD = joined(maybe(joined(NUMBER, st.just("!")), 4), RELEASE, st.just(".*"))
TWO_PART_VERSION = joined(
    maybe(joined(NUMBER, st.just("!")), 4), NUMBER, st.just("."), RELEASE, maybe(PRE), maybe(POST), maybe(DEV)
)
ARBITRARY = st.text(st.sampled_from("abcXY1.+-_!*,=<"), max_size=6)
# Mostly versions that suit the operator, sometimes any version with any operator.
OP_AND_VERSION = weighted(
    (3, st.tuples(st.sampled_from(["==", "!="]), st.one_of(VERSION, WILDCARD))),
    (4, st.tuples(st.sampled_from(["<", ">", "<=", ">="]), PUBLIC_VERSION)),
    (2, st.tuples(st.just("~="), TWO_PART_VERSION)),
    (1, st.tuples(st.just("==="), st.one_of(VERSION, ARBITRARY))),
    (1, st.tuples(st.sampled_from(OPS), st.one_of(VERSION, WILDCARD, joined(VERSION, st.just(".*")), ARBITRARY))),
)
CLEAN_SPEC_TEXT = st.tuples(SPEC_WS, OP_AND_VERSION, SPEC_WS, SPEC_WS).map(
    lambda p: p[0] + p[1][0] + p[2] + p[1][1] + p[3]
)
SPEC_TEXT = noisy(CLEAN_SPEC_TEXT)
SET_TEXT = st.lists(
    weighted((6, CLEAN_SPEC_TEXT), (1, SPEC_TEXT), (1, st.just("")), (1, SPEC_WS)), max_size=4
).map(",".join) | noisy(st.just(">=1.0,<2"))

# Versions "near" a base release, where specifier edge cases live.
SUFFIX = st.sampled_from(
    ["", "", "a1", "b2", "rc1", ".post1", ".post0", ".dev0", ".dev3", "a1.dev1",
     ".post1.dev1", "rc1.post2", "a1.post1.dev2"]
)
CANDIDATE_LOCAL = st.sampled_from(["", "", "", "+abc", "+1", "+abc.2", "+0"])


@st.composite
def near_versions(draw: st.DrawFn, anchors: list[str]) -> list[str]:
    """Valid version strings close to the release segments found in ``anchors``."""
    releases: list[tuple[int, ...]] = [(0,), (1, 0), (2,)]
    for text in anchors:
        try:
            releases.append(pver.Version(text.strip().removesuffix(".*").strip("=!~<> \t\n")).release)
        except pver.InvalidVersion:
            pass
    result = []
    for _ in range(draw(st.integers(3, 8))):
        release = list(draw(st.sampled_from(releases)))
        tweak = draw(st.sampled_from(["same", "same", "zero", "bump", "drop", "extend", "lower"]))
        if tweak == "zero":
            release.append(0)
        elif tweak == "bump":
            release[-1] += 1
        elif tweak == "drop" and len(release) > 1:
            release.pop()
        elif tweak == "extend":
            release.append(draw(st.integers(0, 3)))
        elif tweak == "lower" and release[-1] > 0:
            release[-1] -= 1
        epoch = draw(st.sampled_from(["", "", "", "1!"]))
        text = epoch + ".".join(map(str, release)) + draw(SUFFIX) + draw(CANDIDATE_LOCAL)
        result.append(text)
    return result


def ours_or_error(parse: Callable[[str], T], text: str) -> T | Exception:
    """Parse with our code, returning the exception instead of raising."""
    try:
        return parse(text)
    except (InvalidVersion, InvalidSpecifier) as exc:
        return exc


def theirs_or_error(parse: Callable[[str], T], text: str) -> T | Exception:
    """Parse with packaging, returning the exception instead of raising."""
    try:
        return parse(text)
    except (pver.InvalidVersion, pspec.InvalidSpecifier) as exc:
        return exc


def unevaluable_in_packaging(spec: pspec.Specifier) -> bool:
    """packaging accepts e.g. '~=1.0poſt1' (Unicode case folding) but cannot parse its version.

    We reject these at parse time instead; this is the one accepted divergence.
    """
    return spec.operator != "===" and not is_valid_version(spec.version.removesuffix(".*"))


# ------------------------------------------------------------------ versions


@pytest.mark.slow  # hundreds of generated versions or specifiers, each also parsed by packaging
@SETTINGS
@given(VERSION_TEXT)
def test_version_parse_agrees_with_packaging(text: str) -> None:
    ours, theirs = ours_or_error(Version.parse, text), theirs_or_error(pver.Version, text)
    assert isinstance(ours, Version) == isinstance(theirs, pver.Version), (ours, theirs)
    if isinstance(ours, Version):
        assert isinstance(theirs, pver.Version)
        assert str(ours) == str(theirs)
        assert (ours.epoch, ours.release, ours.pre, ours.post, ours.dev, ours.local) == (
            theirs.epoch, theirs.release, theirs.pre, theirs.post, theirs.dev, theirs.local,
        )
        assert (ours.public, ours.base_version) == (theirs.public, theirs.base_version)
        assert (ours.is_prerelease, ours.is_postrelease, ours.is_devrelease) == (
            theirs.is_prerelease, theirs.is_postrelease, theirs.is_devrelease,
        )
        assert (ours.major, ours.minor, ours.micro) == (theirs.major, theirs.minor, theirs.micro)
        assert Version.parse(str(ours)) == ours


COMPARISONS = [operator.lt, operator.le, operator.eq, operator.ne, operator.gt, operator.ge]


@pytest.mark.slow  # hundreds of generated versions or specifiers, each also parsed by packaging
@settings(SETTINGS, max_examples=100)
@given(st.lists(VALID_VERSION, min_size=2, max_size=6), st.data())
def test_version_ordering_agrees_with_packaging(texts: list[str], data: st.DataObject) -> None:
    texts += data.draw(near_versions(texts))
    ours = [Version.parse(t) for t in texts]
    theirs = [pver.Version(t) for t in texts]
    for (a, pa), (b, pb) in itertools.product(zip(ours, theirs), repeat=2):
        assert [op(a, b) for op in COMPARISONS] == [op(pa, pb) for op in COMPARISONS], (a, b)
        if a == b:
            assert hash(a) == hash(b)
    assert [str(v) for v in sorted(ours)] == [str(v) for v in sorted(theirs)]


# ---------------------------------------------------------------- specifiers


@pytest.mark.slow  # hundreds of generated versions or specifiers, each also parsed by packaging
@SETTINGS
@given(SPEC_TEXT, st.data())
def test_specifier_agrees_with_packaging(text: str, data: st.DataObject) -> None:
    ours, theirs = ours_or_error(Specifier.parse, text), theirs_or_error(pspec.Specifier, text)
    if isinstance(theirs, pspec.Specifier) and unevaluable_in_packaging(theirs):
        assert isinstance(ours, InvalidSpecifier)
        return
    assert isinstance(ours, Specifier) == isinstance(theirs, pspec.Specifier), (ours, theirs)
    if not isinstance(ours, Specifier):
        return
    assert isinstance(theirs, pspec.Specifier)
    assert (str(ours), ours.operator, ours.version) == (str(theirs), theirs.operator, theirs.version)
    candidates = data.draw(near_versions([text])) + [theirs.version, text, "junk", "1.0 "]
    for candidate, prereleases in itertools.product(candidates, [None, True, False]):
        expected = theirs.contains(candidate, prereleases=prereleases)
        assert ours.contains(candidate, prereleases=prereleases) == expected, (candidate, prereleases)
        if is_valid_version(candidate):
            ours_v, theirs_v = Version.parse(candidate), pver.Version(candidate)
            expected = theirs.contains(theirs_v, prereleases=prereleases)
            assert ours.contains(ours_v, prereleases=prereleases) == expected, (candidate, prereleases)


@pytest.mark.slow  # hundreds of generated versions or specifiers, each also parsed by packaging
@settings(SETTINGS, max_examples=150)
@given(CLEAN_SPEC_TEXT, CLEAN_SPEC_TEXT, st.data())
def test_specifier_equality_agrees_with_packaging(first: str, second: str, data: st.DataObject) -> None:
    if data.draw(st.booleans()):  # often compare two spellings of the same specifier
        second = first.replace(" ", "") + data.draw(st.sampled_from(["", ".0", ".0.0"]))
    ours = [ours_or_error(Specifier.parse, text) for text in (first, second)]
    theirs = [theirs_or_error(pspec.Specifier, text) for text in (first, second)]
    if all(isinstance(s, Specifier) for s in ours) and all(isinstance(s, pspec.Specifier) for s in theirs):
        (a, b), (pa, pb) = ours, theirs
        assert (a == b) == (pa == pb), (a, b)
        if a == b:
            assert hash(a) == hash(b)


@pytest.mark.slow  # hundreds of generated versions or specifiers, each also parsed by packaging
@SETTINGS
@given(SET_TEXT, st.data())
def test_specifier_set_agrees_with_packaging(text: str, data: st.DataObject) -> None:
    ours, theirs = ours_or_error(SpecifierSet.parse, text), theirs_or_error(pspec.SpecifierSet, text)
    if isinstance(theirs, pspec.SpecifierSet) and any(map(unevaluable_in_packaging, theirs)):
        assert isinstance(ours, InvalidSpecifier)
        return
    assert isinstance(ours, SpecifierSet) == isinstance(theirs, pspec.SpecifierSet), (ours, theirs)
    if not isinstance(ours, SpecifierSet):
        return
    assert isinstance(theirs, pspec.SpecifierSet)
    assert str(ours) == str(theirs)
    # packaging only sorts and de-duplicates its specifiers once str() ran (above).
    assert [str(s) for s in ours] == [str(s) for s in theirs]
    assert len(ours) == len(theirs) and bool(ours) == bool(theirs)
    assert ours == SpecifierSet.parse(str(ours)) and hash(ours) == hash(SpecifierSet.parse(str(ours)))
    candidates = data.draw(near_versions([str(s) for s in theirs])) + ["junk", "1.0a1"]
    candidates += [s.version for s in theirs]
    for candidate, prereleases in itertools.product(candidates, [None, True, False]):
        expected = theirs.contains(candidate, prereleases=prereleases)
        assert ours.contains(candidate, prereleases=prereleases) == expected, (candidate, prereleases)
        assert (candidate in ours) == (candidate in theirs)
        if is_valid_version(candidate):
            expected = theirs.contains(pver.Version(candidate), prereleases=prereleases)
            actual = ours.contains(Version.parse(candidate), prereleases=prereleases)
            assert actual == expected, (candidate, prereleases)


# ------------------------------------------------------------------ examples


@pytest.mark.parametrize(
    ("text", "normalised"),
    [
        ("1.0", "1.0"),
        (" v1.0 ", "1.0"),
        ("1!2.0", "1!2.0"),
        ("0!1.0", "1.0"),
        ("1.0ALPHA1", "1.0a1"),
        ("1.0-preview_2", "1.0rc2"),
        ("1.0c3", "1.0rc3"),
        ("1.0-1", "1.0.post1"),
        ("1.0.rev", "1.0.post0"),
        ("1.0-dev", "1.0.dev0"),
        ("01.002.0003", "1.2.3"),
        ("1.0+Ubuntu-01_x", "1.0+ubuntu.1.x"),
        ("1.0a.", "1.0a0"),
    ],
    ids=lambda value: repr(value),
)
def test_version_examples(text: str, normalised: str) -> None:
    assert str(Version.parse(text)) == normalised == str(pver.Version(text))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "invalid version '': not a PEP 440 version"),
        ("1.0.x", "invalid version '1.0.x': not a PEP 440 version"),
        ("1..0", "invalid version '1..0': not a PEP 440 version"),
    ],
    ids=["empty", "letters", "empty-component"],
)
def test_version_errors(text: str, message: str) -> None:
    with pytest.raises(InvalidVersion, match="^" + message.replace(".", r"\.").replace("(", r"\(")):
        Version.parse(text)


def test_version_ordering_examples() -> None:
    ordered = ["1.0.dev0", "1.0a1.dev1", "1.0a1", "1.0a1.post1", "1.0b1", "1.0rc1", "1.0",
               "1.0+abc", "1.0+abc.1", "1.0+1", "1.0.post1.dev1", "1.0.post1", "1.0.1", "1!0.1"]
    versions = [Version.parse(t) for t in ordered]
    backwards = versions[::-1]
    assert sorted(backwards) == versions
    assert Version.parse("1.0") == Version.parse("1.0.0") and hash(Version.parse("1")) == hash(Version.parse("1.0"))


@pytest.mark.parametrize(
    ("spec", "version", "prereleases", "expected"),
    [
        (">=1.0", "1.1a1", None, True),
        (">=1.0", "1.1a1", False, False),
        ("==1.0", "1.0+local", None, True),
        ("==1.0+local", "1.0", None, False),
        ("==1.0.*", "1.0.5.dev1", None, True),
        ("!=1.0.*", "1.0", None, False),
        ("~=1.4.5", "1.4.9", None, True),
        ("~=1.4.5", "1.5.dev0", None, False),
        ("<1.0", "1.0rc1", None, False),
        ("<1.0rc2", "1.0rc1", None, True),
        (">1.0", "1.0.post1", None, False),
        (">1.0.post1", "1.0.post2", None, True),
        (">1.0", "1.0+local", None, False),
        ("<=1.0", "1.0+local", None, True),
        ("===1.0", "1.0", None, True),
        ("===1.0", "1.0.0", None, False),
        ("===foobar", "FooBar", None, True),
        (">=1.0", "not a version", None, False),
    ],
    ids=lambda value: repr(value),
)
def test_contains_examples(spec: str, version: str, prereleases: bool | None, expected: bool) -> None:
    assert Specifier.parse(spec).contains(version, prereleases) is expected
    assert SpecifierSet.parse(spec).contains(version, prereleases) is expected
    assert pspec.Specifier(spec).contains(version, prereleases) is expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("<>1", "invalid specifier '<>1': unknown operator '<>' (did you mean '!='?)"),
        ("=>1", "invalid specifier '=>1': unknown operator '=>' (did you mean '>='?)"),
        ("1.0", "invalid specifier '1.0': expected an operator (~=, ==, !=, <=, >=, <, >, ===) before the version"),
        (">=", "invalid specifier '>=': expected a version after '>='"),
        (">=1.0.*", "invalid specifier '>=1.0.*': a '.*' wildcard is only allowed with '==' and '!='"),
        ("==1.0a1.*", "invalid specifier '==1.0a1.*': a '.*' wildcard cannot follow a pre-, post-, dev- or local version"),
        ("<1.0+abc", "invalid specifier '<1.0+abc': a local version label ('+...') is only allowed with '==' and '!='"),
        ("~=1", "invalid specifier '~=1': '~=' needs at least two release components, such as '~=1.4'"),
        (">=1.x", "invalid specifier '>=1.x': '1.x' is not a PEP 440 version"),
        ("===a b", "invalid specifier '===a b': an '===' version cannot contain whitespace, ';' or ')'"),
        (">=1,<2,=<3", "invalid specifier '>=1,<2,=<3': unknown operator '=<' (did you mean '<='?) (in '=<3')"),
    ],
    ids=["diamond", "reversed-ge", "no-operator", "no-version", "ordered-wildcard", "pre-wildcard",
         "ordered-local", "compatible-one-part", "bad-version", "arbitrary-space", "in-set"],
)
def test_specifier_errors(text: str, message: str) -> None:
    with pytest.raises(InvalidSpecifier) as info:
        SpecifierSet.parse(text)
    assert str(info.value) == message
    with pytest.raises(pspec.InvalidSpecifier):
        pspec.SpecifierSet(text)


def test_specifier_set_container_protocol() -> None:
    specs = SpecifierSet.parse(" >=1.0 , ,!=1.5, ==1.0.0 ,==1 ")
    assert str(specs) == "!=1.5,==1,>=1.0" == str(pspec.SpecifierSet(" >=1.0 , ,!=1.5, ==1.0.0 ,==1 "))
    assert [str(s) for s in specs] == ["!=1.5", "==1", ">=1.0"] and len(specs) == 3
    assert not SpecifierSet.parse("") and SpecifierSet.parse("").contains("anything")
    assert "1.0" in specs and "1.5" not in specs
    combined = specs & SpecifierSet.parse("<2,>=1")
    assert str(combined) == "!=1.5,<2,==1,>=1" == str(pspec.SpecifierSet(str(specs)) & "<2,>=1")
