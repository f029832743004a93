"""C3 ordering of frameworks, inferred platforms and inherited index pins."""

from __future__ import annotations

import pytest

from venvstacks.spec.layering import LinearisationError, infer_platforms, linearise, merge_package_indexes
from venvstacks.platforms import TargetPlatform as P


def _lineage(graph: dict[str, list[str]]) -> dict[str, tuple[str, ...]]:
    """Linearise every framework of a graph, in definition order."""
    result: dict[str, tuple[str, ...]] = {}
    for name, deps in graph.items():
        result[name] = linearise(deps, result.__getitem__)
    return result


@pytest.mark.parametrize(
    ("graph", "declared", "expected"),
    [
        pytest.param({}, [], (), id="no-frameworks"),
        pytest.param({"A": []}, ["A"], ("A",), id="single"),
        pytest.param({"A": [], "B": ["A"]}, ["B"], ("B", "A"), id="chain"),
        # upstream's minimal project: D -> [B, C], B -> A, C -> A
        pytest.param({"A": [], "B": ["A"], "C": ["A"]}, ["B", "C"], ("B", "C", "A"), id="diamond"),
        # ... and an app on [D, F@1] with F@1 -> E -> B -> A
        pytest.param(
            {"A": [], "B": ["A"], "C": ["A"], "D": ["B", "C"], "E": ["B"], "F@1": ["E"]},
            ["D", "F@1"],
            ("D", "F@1", "E", "B", "C", "A"),
            id="upstream-minimal-app",
        ),
        pytest.param({"A": [], "B": []}, ["B", "A"], ("B", "A"), id="declared-order-kept"),
        pytest.param({"A": [], "B": ["A"]}, ["B", "A"], ("B", "A"), id="redundant-base"),
    ],
)
def test_linearise(graph: dict[str, list[str]], declared: list[str], expected: tuple[str, ...]) -> None:
    lineage = _lineage(graph)
    assert linearise(declared, lineage.__getitem__) == expected


def test_linearise_matches_python_mro() -> None:
    # C3 is Python's method resolution order: the same graph as classes gives the same order.
    graph = {"A": [], "B": ["A"], "C": ["A"], "D": ["B", "C"], "E": ["C"], "F": ["D", "E"]}
    classes: dict[str, type] = {}
    for name, deps in graph.items():
        classes[name] = type(name, tuple(classes[d] for d in deps) or (object,), {})
    lineage = _lineage(graph)
    for name, deps in graph.items():
        mro = tuple(c.__name__ for c in classes[name].__mro__[1:-1])
        assert linearise(deps, lineage.__getitem__) == mro


def test_linearise_conflict_reports_the_conflicting_orders() -> None:
    lineage = _lineage({"A": [], "B": [], "C": ["A", "B"], "D": ["B", "A"]})
    with pytest.raises(LinearisationError) as caught:
        linearise(["C", "D"], lineage.__getitem__)
    assert caught.value.remaining == (("framework 'C'", ("A", "B")), ("framework 'D'", ("B", "A")))
    assert str(caught.value) == (
        "dependency linearization failed: no sys.path order satisfies "
        "['A', 'B'] (from framework 'C'), ['B', 'A'] (from framework 'D')"
    )


def test_linearise_conflict_with_declared_order() -> None:
    lineage = _lineage({"A": [], "B": ["A"]})
    with pytest.raises(LinearisationError, match=r"\['A', 'B'\] \(from the declared 'frameworks' order\)"):
        linearise(["A", "B"], lineage.__getitem__)


ALL = tuple(P)


@pytest.mark.parametrize(
    ("declared", "lower", "expected", "unsupported"),
    [
        pytest.param(None, [], ALL, (), id="runtime-default-all"),
        pytest.param(None, [ALL, (P.WIN_AMD64, P.LINUX_X86_64)], (P.LINUX_X86_64, P.WIN_AMD64), (), id="intersection-default-order"),
        pytest.param((P.WIN_AMD64, P.LINUX_X86_64), [ALL], (P.WIN_AMD64, P.LINUX_X86_64), (), id="declared-order-kept"),
        pytest.param((P.WIN_AMD64,), [(P.LINUX_X86_64,)], (), (P.WIN_AMD64,), id="unsupported"),
        pytest.param((), [ALL], (), (), id="disabled"),
        pytest.param(None, [()], (), (), id="disabled-below"),
    ],
)
def test_infer_platforms(
    declared: tuple[P, ...] | None, lower: list[tuple[P, ...]], expected: tuple[P, ...], unsupported: tuple[P, ...]
) -> None:
    assert infer_platforms(declared, lower) == (expected, unsupported)


def test_merge_package_indexes_inherits_and_normalises() -> None:
    merged, problems = merge_package_indexes({"My_Lib": "internal"}, {}, [{"torch": "cpu"}])
    assert merged == {"torch": "cpu", "my-lib": "internal"}
    assert problems == []


def test_merge_package_indexes_first_lower_layer_wins_with_override() -> None:
    merged, problems = merge_package_indexes({}, {"cu128": "cpu"}, [{"torch": "cpu"}, {"torch": "cu128"}])
    assert merged == {"torch": "cpu"} and problems == []


def test_merge_package_indexes_conflicts() -> None:
    _, problems = merge_package_indexes({}, {}, [{"torch": "cpu"}, {"torch": "cu128"}])
    assert problems == [
        (
            "index_overrides",
            "depends on layers with inconsistent package index overrides for 'torch' ('cpu' and 'cu128'); "
            "specify 'index_overrides = {cu128 = \"cpu\"}' to accept",
        )
    ]
    merged, problems = merge_package_indexes({"Torch": "cu128"}, {"cpu": "cu128"}, [{"torch": "cpu"}])
    assert merged == {"torch": "cu128"} and problems == []
