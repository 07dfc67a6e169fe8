"""Package layout: production modules never reach evaluation, benchmark or synthetic-call code,
the library never imports the dashboard or the workers, and production imports form no cycle."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

QA = Path(__file__).resolve().parent.parent / "qa"
MEASURE_PACKAGES = ("qa.evaluation", "qa.bench")  # evaluation, benchmarks
APART = (*MEASURE_PACKAGES, "qa.synth")  # and synthetic calls
OUTSIDE = ("dashboard", "workers")  # import `qa`, never imported by it
# Not production: the packages above, the command line that wires them in lazily, and the
# offline training script, which measures the sentiment head it has just fitted.
NOT_PRODUCTION = (
    "qa/evaluation/",
    "qa/bench/",
    "qa/synth.py",
    "qa/cli.py",
    "qa/scoring/train_sentiment.py",
)
# Production packages that must hold no timing or accuracy code of their own, and the
# function names that give such code away.
MEASURED_APART = ("qa/scoring/", "qa/asr/", "qa/rules/")
MEASURING = ("time_", "bench", "benchmark", "evaluate")
PRODUCTION_IMPORTS = [
    "qa.asr.whisper",
    "qa.asr.diarize",
    "qa.asr.speakers",
    "qa.asr.utterances",
    "qa.asr.quality",
    "qa.asr.roles",
    "qa.asr.export",
    "qa.audio",
    "qa.pipeline",
    "qa.index",
    "qa.store",
    "qa.schema",
    "qa.ingest",
    "qa.results",
    "qa.playback",
    "qa.rules.format",
    "qa.scoring.metrics",
    "qa.scoring.scorecard",
    "qa.scoring.redact",
    "qa.workflow",
]


def _module_name(path: Path) -> str:
    parts = path.relative_to(QA.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _production_files() -> list[Path]:
    files = []
    for path in sorted(QA.rglob("*.py")):
        rel = path.relative_to(QA.parent).as_posix()
        if not any(rel == p or rel.startswith(p) for p in NOT_PRODUCTION):
            files.append(path)
    return files


def _imported(path: Path) -> list[tuple[int, str, list[str]]]:
    """(line, module, names) of every import statement, inside functions and
    `if TYPE_CHECKING:` blocks too; relative imports resolved."""
    package = _module_name(path)
    if path.name != "__init__.py":
        package = package.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                parts = package.split(".")
                base = parts[: len(parts) - node.level + 1]
                module = ".".join([*base, module] if module else base)
            found.append((node.lineno, module, [alias.name for alias in node.names]))
    return found


def _names(module: str, names: list[str]) -> list[str]:
    """The module and each `from module import name` as a dotted name (it may be a module)."""
    return [module, *(f"{module}.{n}" for n in names)]


def _within(name: str, packages: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def test_production_import_leaves_evaluation_bench_and_synth_out():
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in PRODUCTION_IMPORTS)
        + f"print('\\n'.join(m for m in sys.modules if m.startswith({APART + OUTSIDE!r})))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=QA.parent
    )
    assert done.returncode == 0, done.stderr
    loaded = [m for m in done.stdout.split() if _within(m, APART + OUTSIDE)]
    assert not loaded, f"importing the production modules loaded {loaded}"


def test_no_production_file_names_evaluation_bench_or_synth():
    found = []
    for path in _production_files():
        for line, module, names in _imported(path):
            bad = [n for n in _names(module, names) if _within(n, APART)]
            if bad:
                found.append(f"{path.relative_to(QA.parent)}:{line} imports {bad[0]}")
    assert not found, "production modules import evaluation/benchmark code:\n" + "\n".join(found)


def _top_level_functions(path: Path) -> list[tuple[int, str]]:
    """(line, name) of every function defined in the module body; methods such as
    `CallContext.evaluate`, which applies a rule to a call, are the product's own work."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    return [
        (node.lineno, node.name)
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    ]


def test_scoring_asr_and_rules_hold_no_evaluation_or_benchmark_code():
    """Timing and accuracy helpers belong in qa/bench and qa/evaluation, even where only
    those packages call them: a production module neither defines nor imports them."""
    found = []
    for path in _production_files():
        rel = path.relative_to(QA.parent)
        if not rel.as_posix().startswith(MEASURED_APART):
            continue
        found += [
            f"{rel}:{line} defines {name}()"
            for line, name in _top_level_functions(path)
            if name.startswith(MEASURING)
        ]
        for line, module, names in _imported(path):
            bad = [n for n in _names(module, names) if _within(n, MEASURE_PACKAGES)]
            if bad:
                found.append(f"{rel}:{line} imports {bad[0]}")
    assert not found, (
        "evaluation/benchmark code in production modules (move it to qa/evaluation or "
        "qa/bench):\n" + "\n".join(found)
    )


def test_library_never_imports_dashboard_or_workers():
    found = [
        f"{path.relative_to(QA.parent)}:{line} imports {module}"
        for path in sorted(QA.rglob("*.py"))
        for line, module, _ in _imported(path)
        if _within(module, OUTSIDE)
    ]
    assert not found, "qa/ must not import the dashboard or the workers:\n" + "\n".join(found)


def test_production_imports_form_no_cycle():
    """Every import counts, lazy or for type checking only; a module importing its own parent
    package (`from qa.workflow import ...` in qa.workflow.service) is not a cycle."""
    files = {_module_name(p): p for p in _production_files()}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        deps = {n for _, module, names in _imported(path) for n in _names(module, names)}
        graph[name] = {d for d in deps & files.keys() if d != name and not name.startswith(d + ".")}
    cycles = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                cycles.append(" -> ".join([*path[path.index(dep) :], dep]))
            elif dep not in state:
                visit(dep, [*path, dep])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not cycles, "import cycles among production modules:\n" + "\n".join(cycles)
