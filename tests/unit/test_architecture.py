"""The floors of geodiff: an import only ever points down, there are no import cycles, and the library never
imports its command line (``geodiff.cli``). Checked on the import graph that grimp builds from the source
(imports inside functions included)."""

import grimp
import pytest

# top to bottom; a module may import from its own floor and the floors below it
FLOORS = [
    ("cli",),
    ("training", "testing"),
    ("pipelines",),
    ("metrics",),
    ("data",),
    ("models",),
    ("nn",),
    ("schedulers",),
    ("manifolds",),
    ("config", "io"),
    ("errors",),
]
LEVEL = {name: k for k, names in enumerate(FLOORS) for name in names}


@pytest.fixture(scope="module")
def graph():
    return grimp.build_graph("geodiff")


def _floor(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_subpackage_has_a_floor(graph):
    floors = {_floor(m) for m in graph.modules} - {"__init__", "__main__"}
    assert floors <= set(LEVEL), f"subpackages without a floor in FLOORS: {floors - set(LEVEL)}"


def test_imports_only_point_down(graph):
    upward = []
    for importer in graph.modules:
        for imported in graph.find_modules_directly_imported_by(importer):
            a, b = _floor(importer), _floor(imported)
            if a in LEVEL and b in LEVEL and LEVEL[b] < LEVEL[a]:
                upward.append(f"{importer} -> {imported}")
    assert not upward, "imports that run back up a floor:\n" + "\n".join(sorted(upward))


def test_library_never_imports_the_cli(graph):
    importers = graph.find_modules_that_directly_import("geodiff.cli") - {"geodiff.__main__"}
    assert not importers, f"the library imports geodiff.cli: {sorted(importers)}"


def test_no_import_cycles(graph):
    # a direct import whose target reaches back to the importer closes a cycle
    back = sorted(
        f"{m} -> {i}"
        for m in graph.modules
        for i in graph.find_modules_directly_imported_by(m)
        if graph.chain_exists(importer=i, imported=m)
    )
    assert not back, "imports that close a cycle:\n" + "\n".join(back)


def test_the_cli_is_thin():
    """``geodiff/cli.py`` parses, calls the library and prints: at most 350 lines."""
    from pathlib import Path

    import geodiff.cli

    assert len(Path(geodiff.cli.__file__).read_text().splitlines()) <= 350
