"""The package's layout follows the data flow: a stage imports only stages before it.

Every ``import netflowgen.X`` / ``from netflowgen.X import`` in ``src/`` (at module level or
inside a function) is checked against the stages the importing one may use. A new upward import
fails here; the known exceptions are listed with their reason, to be removed, not added to.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).parents[1] / "src" / "netflowgen"

# Stages in the order of the data flow (DESIGN.md section 2). Each may import the shared
# modules and any stage listed before it.
SHARED = {"schema", "artifacts"}
FLOW = ["read", "dataset", "series", "tokenize", "model", "train", "detect"]
MAY_IMPORT: dict[str, set[str]] = {stage: SHARED | set(FLOW[: i + 1]) for i, stage in enumerate(FLOW)}
MAY_IMPORT["read"] = {"schema", "read"}
MAY_IMPORT["model"] = {"model"}  # the model file imports nothing of ours (STYLE.md 1)
# Where the flow forks: live collection reads flows and builds the online series; synthesis
# writes flow datasets (simulated, or attacks injected into a capture) and picks nodes as the
# series does.
MAY_IMPORT["collect"] = MAY_IMPORT["series"] | {"collect"}
MAY_IMPORT["simulate"] = MAY_IMPORT["series"] | {"simulate"}
MAY_IMPORT["detect"] |= {"collect"}  # live detection listens through the collector

# Upward imports that remain, each with the work that removes it (none now: keep it so).
KNOWN: dict[tuple[str, str], str] = {}

# What may stand at the package's top: the shared modules, the package and its Python API.
# Every stage has its folder.
TOP_LEVEL = {"__init__.py", "api.py", "artifacts.py", "schema.py"}


def _stage(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("netflowgen."):
            found.add(_stage(node.module))
        elif isinstance(node, ast.Import):
            found |= {_stage(a.name) for a in node.names if a.name.startswith("netflowgen.")}
    return found


def test_every_stage_imports_only_the_stages_before_it() -> None:
    checked, wrong = 0, []
    for stage, allowed in MAY_IMPORT.items():
        files = sorted((SRC / stage).rglob("*.py")) if (SRC / stage).is_dir() else [SRC / f"{stage}.py"]
        assert files and all(f.is_file() for f in files), stage
        for f in files:
            checked += 1
            for target in _imports(f) - allowed:
                if (stage, target) not in KNOWN:
                    wrong.append(f"{f.relative_to(SRC)} imports netflowgen.{target}")
    assert checked > 40  # the walk found the package
    assert not wrong, "imports against the flow:\n" + "\n".join(wrong)


def test_no_stage_module_stands_at_the_top() -> None:
    assert {f.name for f in SRC.glob("*.py")} == TOP_LEVEL


def test_detection_does_not_import_evaluation() -> None:
    importers = [f.name for f in (SRC / "detect").rglob("*.py") if "evaluate" in _imports(f)]
    assert importers == []


def test_the_check_finds_an_upward_import(tmp_path: Path) -> None:
    planted = tmp_path / "x.py"
    planted.write_text("def f():\n    from netflowgen.evaluate.metrics import episodes\n")
    assert _imports(planted) == {"evaluate"}


def _code_strings(path: Path) -> list[str]:
    """The string constants of a module's code (f-string parts included), docstrings left out."""
    tree = ast.parse(path.read_text())
    docs = {id(n.body[0].value) for n in ast.walk(tree)
            if isinstance(n, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
            and n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    return [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs]


def test_the_flow_dataset_layout_is_spelled_once() -> None:
    spelled = sorted(str(f.relative_to(SRC)) for f in SRC.rglob("*.py")
                     if any("date=" in s or "part-" in s and "parquet" in s for s in _code_strings(f)))
    # The series artifact has its own part files (series/write.py); the flow dataset's are here.
    assert spelled == ["dataset/layout.py", "series/write.py"], spelled


# Modules over about 500 lines, each with the reason it stays one module. The list must match the
# package exactly: a module that grows past the limit fails here until it is split or given a
# reason, and one that shrinks below it is taken off.
LONG = 520
LONG_MODULES = {
    "collect/server.py": "the collector: receive and decode threads, rotation, rejects, manifest and status share one "
                         "lock and one life cycle (start, stop, failure); split, each part would reach into the others",
    "collect/netflow.py": "the decoder's per-exporter state machine (templates, domains, sequence streams, bounded "
                          "tables, every counter); its wire format and bulk decoding are wire.py",
    "read/filter.py": "the nfdump filter grammar: tokenizer, recursive-descent parser and the Polars expression of "
                      "each primitive, one grammar read top to bottom",
    "read/cicflowmeter.py": "one format with four published variants, each quirk next to the fast path it guards",
    "simulate/inject.py": "the injection method: its docstring (84 lines) states it step by step, beside the code "
                          "doing each step; the configuration and results are inject_config.py",
}


def test_no_module_is_long_without_a_stated_reason() -> None:
    sizes = {str(f.relative_to(SRC)): len(f.read_text().splitlines()) for f in SRC.rglob("*.py")}
    long = sorted(name for name, n in sizes.items() if n > LONG)
    assert long == sorted(LONG_MODULES), {name: sizes[name] for name in long}
