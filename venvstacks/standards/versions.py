"""PEP 440 versions, version specifiers and specifier sets (standard library only).

Accepted syntax, normalised ``str()`` forms, ordering and ``contains()`` results
follow packaging 26.3 (``packaging.version`` and ``packaging.specifiers``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from functools import cached_property, total_ordering

from ..errors import InvalidSpecifier, InvalidVersion

__all__ = ["Specifier", "SpecifierSet", "Version"]

# PEP 440 (appendix B) permissive grammar, matched against the whole string.
_VERSION_RE = re.compile(
    r"""
    \s* v?
    (?a:
        (?:(?P<epoch>[0-9]+)!)?
        (?P<release>[0-9]+(?:\.[0-9]+)*)
        (?:[-_.]?(?P<pre_l>alpha|a|beta|b|preview|pre|c|rc)[-_.]?(?P<pre_n>[0-9]+)?)?
        (?:-(?P<post_n1>[0-9]+)|[-_.]?(?P<post_l>post|rev|r)[-_.]?(?P<post_n2>[0-9]+)?)?
        (?:[-_.]?(?P<dev_l>dev)[-_.]?(?P<dev_n>[0-9]+)?)?
        (?:\+(?P<local>[a-z0-9]+(?:[-_.][a-z0-9]+)*))?
    )
    \s*
    """,
    re.VERBOSE | re.IGNORECASE,
)

_PRE_SPELLING = {"a": "a", "alpha": "a", "b": "b", "beta": "b"}
_PRE_RANK = {"a": 0, "b": 1, "rc": 2}
_VERSION_EXAMPLES = "such as '1.2', '2.0rc1' or '1!3.0.post1.dev2+local.7'"
# (epoch, release without trailing zeros, pre/post/dev ranks, local segments)
_Key = tuple[int, tuple[int, ...], tuple[int, ...], tuple[tuple[int, str], ...]]


@total_ordering
@dataclass(frozen=True, eq=False)
class Version:
    """A PEP 440 version; compares, orders and hashes by PEP 440 rules."""

    epoch: int = 0
    release: tuple[int, ...] = (0,)
    pre: tuple[str, int] | None = None
    post: int | None = None
    dev: int | None = None
    local: str | None = None

    @classmethod
    def parse(cls, text: str) -> Version:
        """Parse a version string, raising InvalidVersion if it is not PEP 440."""
        match = _VERSION_RE.fullmatch(text) if isinstance(text, str) else None
        if match is None:
            raise InvalidVersion(
                f"invalid version {text!r}: not a PEP 440 version ({_VERSION_EXAMPLES})"
            )
        pre = None
        if match["pre_l"]:
            letter = match["pre_l"].lower()
            pre = (_PRE_SPELLING.get(letter, "rc"), int(match["pre_n"] or 0))
        post = None
        if match["post_n1"]:
            post = int(match["post_n1"])
        elif match["post_l"]:
            post = int(match["post_n2"] or 0)
        local = None
        if match["local"]:
            parts = re.split(r"[-_.]", match["local"].lower())
            local = ".".join(str(int(p)) if p.isdigit() else p for p in parts)
        return cls(
            epoch=int(match["epoch"] or 0),
            release=tuple(int(part) for part in match["release"].split(".")),
            pre=pre,
            post=post,
            dev=int(match["dev_n"] or 0) if match["dev_l"] else None,
            local=local,
        )

    @cached_property
    def _key(self) -> _Key:
        """Sort key: trailing release zeros dropped, pre/post/dev ranked as PEP 440 says."""
        release = self.release
        end = len(release)
        while end and release[end - 1] == 0:
            end -= 1
        if self.pre is not None:
            pre = (_PRE_RANK[self.pre[0]], self.pre[1])
        elif self.post is None and self.dev is not None:
            pre = (-1, 0)  # a bare .devN sorts before every a/b/rc of its release
        else:
            pre = (3, 0)
        post = (0, 0) if self.post is None else (1, self.post)
        dev = (1, 0) if self.dev is None else (0, self.dev)
        local: tuple[tuple[int, str], ...] = ()
        if self.local is not None:
            local = tuple(
                (int(p), "") if p.isdigit() else (-1, p) for p in self.local.split(".")
            )
        return (self.epoch, release[:end], pre + post + dev, local)

    def __str__(self) -> str:
        text = ".".join(map(str, self.release))
        if self.epoch:
            text = f"{self.epoch}!{text}"
        if self.pre is not None:
            text += f"{self.pre[0]}{self.pre[1]}"
        if self.post is not None:
            text += f".post{self.post}"
        if self.dev is not None:
            text += f".dev{self.dev}"
        if self.local is not None:
            text += f"+{self.local}"
        return text

    def __repr__(self) -> str:
        return f"Version.parse({str(self)!r})"

    def __hash__(self) -> int:
        return hash(self._key)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self._key == other._key

    def __lt__(self, other: Version) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self._key < other._key

    @property
    def public(self) -> str:
        """The normalised version without its local label."""
        return str(self).split("+", 1)[0]

    @property
    def base_version(self) -> str:
        """The epoch and release segments only, e.g. ``'1!2.0'``."""
        text = ".".join(map(str, self.release))
        return f"{self.epoch}!{text}" if self.epoch else text

    @property
    def is_prerelease(self) -> bool:
        """True for alpha/beta/rc and development releases."""
        return self.pre is not None or self.dev is not None

    @property
    def is_postrelease(self) -> bool:
        """True when the version has a post-release segment."""
        return self.post is not None

    @property
    def is_devrelease(self) -> bool:
        """True when the version has a development-release segment."""
        return self.dev is not None

    @property
    def major(self) -> int:
        """The first release component."""
        return self.release[0]

    @property
    def minor(self) -> int:
        """The second release component, or 0."""
        return self.release[1] if len(self.release) > 1 else 0

    @property
    def micro(self) -> int:
        """The third release component, or 0."""
        return self.release[2] if len(self.release) > 2 else 0

    def _public_key(self) -> tuple[int, tuple[int, ...], tuple[int, ...]]:
        """The sort key with any local label ignored."""
        return self._key[:3]


def _coerce(item: str | Version) -> Version | None:
    """Parse ``item`` if needed; None when it is not a valid version."""
    if isinstance(item, Version):
        return item
    try:
        return Version.parse(item)
    except InvalidVersion:
        return None


# The specifier grammar; the '~=' branch also needs two release components, and
# only '==' / '!=' accept '.*' wildcards and '+local' labels.
_SPEC_BODY = r"""
    (?:
        ===\s*[^\s;)]*
      | (?:==|!=)\s*v?(?:[0-9]+!)?[0-9]+(?:\.[0-9]+)*
        (?:
            \.\*
          | (?a:[-_.]?(?:alpha|beta|preview|pre|a|b|c|rc)[-_.]?[0-9]*)?
            (?a:-[0-9]+|[-_.]?(?:post|rev|r)[-_.]?[0-9]*)?
            (?a:[-_.]?dev[-_.]?[0-9]*)?
            (?a:\+[a-z0-9]+(?:[-_.][a-z0-9]+)*)?
        )?
      | (?:~=\s*v?(?:[0-9]+!)?[0-9]+(?:\.[0-9]+)+|(?:<=|>=|<|>)\s*v?(?:[0-9]+!)?[0-9]+(?:\.[0-9]+)*)
        (?a:[-_.]?(?:alpha|beta|preview|pre|a|b|c|rc)[-_.]?[0-9]*)?
        (?a:-[0-9]+|[-_.]?(?:post|rev|r)[-_.]?[0-9]*)?
        (?a:[-_.]?dev[-_.]?[0-9]*)?
    )
"""
_SPEC_RE = re.compile(r"\s*" + _SPEC_BODY + r"\s*", re.VERBOSE | re.IGNORECASE)
#: One specifier at a position inside a requirement (used by venvstacks.reqs).
_SPECIFIER_TOKEN_RE = re.compile(_SPEC_BODY, re.VERBOSE | re.IGNORECASE)
_OPERATORS = ("===", "~=", "==", "!=", "<=", ">=", "<", ">")
_OPERATOR_HINTS = {"=>": ">=", "=<": "<=", "=": "==", "<>": "!=", "~": "~=", "!": "!="}
_SPLIT_RE = re.compile(r"\s*([<>=!~]*)\s*(.*?)\s*", re.DOTALL)


def _specifier_problem(text: str) -> str:
    """Explain, in a few words, why ``text`` is not a single valid specifier."""
    op, version = _SPLIT_RE.fullmatch(text).groups()  # type: ignore[union-attr]
    if op.startswith("===") and op != "===" and version == "":
        op, version = "===", op[3:]
    if not op:
        if not version:
            return "expected an operator and a version"
        return "expected an operator (~=, ==, !=, <=, >=, <, >, ===) before the version"
    if op not in _OPERATORS:
        hint = _OPERATOR_HINTS.get(op)
        return f"unknown operator {op!r}" + (f" (did you mean {hint!r}?)" if hint else "")
    if not version:
        return f"expected a version after {op!r}"
    if op == "===":
        return "an '===' version cannot contain whitespace, ';' or ')'"
    base = version.removesuffix(".*")
    if base != version and op not in ("==", "!="):
        return "a '.*' wildcard is only allowed with '==' and '!='"
    if "+" in version and op not in ("==", "!="):
        return "a local version label ('+...') is only allowed with '==' and '!='"
    parsed = _coerce(base)
    if parsed is None:
        return f"{base!r} is not a PEP 440 version"
    if base != version:
        return "a '.*' wildcard cannot follow a pre-, post-, dev- or local version"
    if op == "~=" and len(parsed.release) < 2:
        return "'~=' needs at least two release components, such as '~=1.4'"
    return "not a PEP 440 version specifier"


@dataclass(frozen=True, eq=False)
class Specifier:
    """One version specifier such as ``>=1.2`` or ``==2.0.*``."""

    operator: str
    version: str

    @classmethod
    def parse(cls, text: str) -> Specifier:
        """Parse one specifier, raising InvalidSpecifier if it is not PEP 440."""
        result = _parse_specifier(text)
        if isinstance(result, str):
            raise InvalidSpecifier(f"invalid specifier {text!r}: {result}")
        return result

    @cached_property
    def _target(self) -> Version | None:
        """The parsed version (wildcard removed); None for '===' or invalid."""
        if self.operator == "===":
            return None
        return _coerce(self.version.removesuffix(".*"))

    @cached_property
    def _canonical(self) -> tuple[str, str]:
        """(operator, version) with the version normalised, used for equality."""
        target = self._target
        if target is None or self.version.endswith(".*"):
            return (self.operator, self.version)
        if self.operator == "~=":
            return (self.operator, str(target))
        end = len(target.release)
        while end > 1 and target.release[end - 1] == 0:
            end -= 1
        return (self.operator, str(replace(target, release=target.release[:end])))

    def __str__(self) -> str:
        return f"{self.operator}{self.version}"

    def __repr__(self) -> str:
        return f"Specifier.parse({str(self)!r})"

    def __hash__(self) -> int:
        return hash(self._canonical)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Specifier):
            return NotImplemented
        return self._canonical == other._canonical

    def __contains__(self, item: str | Version) -> bool:
        return self.contains(item)

    def contains(self, version: str | Version, prereleases: bool | None = None) -> bool:
        """Whether ``version`` satisfies this specifier.

        Pre-releases match unless ``prereleases`` is False; an unparsable
        version never matches (except by exact text under ``===``).
        """
        parsed = _coerce(version)
        excluded = prereleases is False and parsed is not None and parsed.is_prerelease
        if self.operator == "===":
            return str(version).lower() == self.version.lower() and not excluded
        return parsed is not None and not excluded and self._matches(parsed)

    def _matches(self, v: Version) -> bool:
        """PEP 440 membership of a parsed version, with no pre-release policy."""
        op, target = self.operator, self._target
        assert target is not None
        if self.version.endswith(".*"):
            low = Version(target.epoch, target.release, dev=0)
            high_release = (*target.release[:-1], target.release[-1] + 1)
            inside = low <= v < Version(target.epoch, high_release, dev=0)
            return inside if op == "==" else not inside
        if op in ("==", "!="):
            if target.local is None:
                equal = v._public_key() == target._public_key()
            else:
                equal = v == target
            return equal if op == "==" else not equal
        if op == ">=":
            return v >= target
        if op == "<=":
            return v._public_key() <= target._public_key()
        if op == "~=":
            upper = (*target.release[:-2], target.release[-2] + 1)
            return target <= v < Version(target.epoch, upper, dev=0)
        if op == "<":
            if not target.is_prerelease:
                target = Version(target.epoch, target.release, post=target.post, dev=0)
            return v < target
        # op == ">": exclude the target's own post-releases and local versions.
        if target.dev is not None:
            return v >= replace(target, dev=target.dev + 1)
        if target.post is not None:
            return v >= replace(target, post=target.post + 1, dev=0)
        return v > target and not (v._key[:2] == target._key[:2] and v.pre == target.pre)


def _parse_specifier(text: str) -> Specifier | str:
    """Parse one specifier; on failure return a short description of the problem."""
    if not isinstance(text, str):
        return "not a string"
    if not _SPEC_RE.fullmatch(text):
        return _specifier_problem(text)
    text = text.strip()
    op = next(o for o in _OPERATORS if text.startswith(o))
    spec = Specifier(op, text[len(op) :].strip())
    if op != "===" and spec._target is None:
        # packaging accepts a few such strings (non-ASCII letters that match
        # case-insensitively, e.g. '~=1.0poſt1') but cannot evaluate them.
        return f"{spec.version!r} is not a PEP 440 version"
    return spec


@dataclass(frozen=True, eq=False)
class SpecifierSet:
    """A comma-separated set of specifiers; a version must satisfy all of them.

    The specifiers are kept sorted by text with equivalent duplicates removed,
    as ``str(packaging.specifiers.SpecifierSet(...))`` shows them.
    """

    specifiers: tuple[Specifier, ...] = field(default=())

    def __post_init__(self) -> None:
        unique: dict[Specifier, None] = dict.fromkeys(sorted(self.specifiers, key=str))
        object.__setattr__(self, "specifiers", tuple(unique))

    @classmethod
    def parse(cls, text: str) -> SpecifierSet:
        """Parse ``'>=1.0,!=1.3'`` (empty items are ignored); raise InvalidSpecifier."""
        if not isinstance(text, str):
            raise InvalidSpecifier(f"invalid specifier set {text!r}: not a string")
        specs = []
        for piece in text.split(","):
            if not piece.strip():
                continue
            result = _parse_specifier(piece)
            if isinstance(result, str):
                where = "" if piece.strip() == text.strip() else f" (in {piece.strip()!r})"
                raise InvalidSpecifier(f"invalid specifier {text!r}: {result}{where}")
            specs.append(result)
        return cls(tuple(specs))

    def __str__(self) -> str:
        return ",".join(map(str, self.specifiers))

    def __repr__(self) -> str:
        return f"SpecifierSet.parse({str(self)!r})"

    def __iter__(self) -> Iterator[Specifier]:
        return iter(self.specifiers)

    def __len__(self) -> int:
        return len(self.specifiers)

    def __bool__(self) -> bool:
        return bool(self.specifiers)

    def __hash__(self) -> int:
        return hash(self.specifiers)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SpecifierSet):
            return NotImplemented
        return self.specifiers == other.specifiers

    def __and__(self, other: SpecifierSet) -> SpecifierSet:
        if not isinstance(other, SpecifierSet):
            return NotImplemented
        return SpecifierSet(self.specifiers + other.specifiers)

    def __contains__(self, item: str | Version) -> bool:
        return self.contains(item)

    def contains(self, version: str | Version, prereleases: bool | None = None) -> bool:
        """Whether ``version`` satisfies every specifier in the set.

        Pre-releases match unless ``prereleases`` is False.  An empty set
        matches anything, even text that is not a valid version.
        """
        parsed = _coerce(version)
        if prereleases is False and parsed is not None and parsed.is_prerelease:
            return False
        if any(spec.operator == "===" for spec in self.specifiers):
            return all(spec.contains(version, prereleases=True) for spec in self.specifiers)
        if parsed is None:
            return not self.specifiers
        return all(spec._matches(parsed) for spec in self.specifiers)
