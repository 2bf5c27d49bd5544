"""`core` holds what every part uses, so it imports nothing above it: no domain app, and none
of the packages built on it (operations, jobs, seeding, the rate limiter). Checked on the
source's import statements, top-level and inside functions alike."""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "microblog"
CORE = SRC / "core"


def imported_modules(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from microblog import jobs` imports microblog.jobs.
            if node.module == "microblog":
                modules.update(f"microblog.{alias.name}" for alias in node.names)
            else:
                modules.add(node.module)
    return modules


def test_core_imports_only_core_and_libraries() -> None:
    outside = {
        f"{path.relative_to(SRC)}: {module}"
        for path in sorted(CORE.rglob("*.py"))
        for module in imported_modules(path)
        if module.startswith("microblog.") and not module.startswith("microblog.core")
    }
    assert outside == set(), "core imports above itself"


def test_the_check_sees_imports_inside_functions(tmp_path: Path) -> None:
    module = tmp_path / "lazy.py"
    module.write_text(
        "def f():\n    from microblog import jobs\n    from microblog.posts import x\n"
    )
    assert imported_modules(module) == {"microblog.jobs", "microblog.posts"}
