"""The shape of the house, checked like its behaviour (docs/layout.md).

The import direction and the absence of cycles are `lint-imports`' (.importlinter), and cyclomatic complexity is
ruff's (C901, at most 15), both in `make test`; what neither checks is how long a module grows.
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("contracts", "kefu", "services", "tools")
MAX_LINES = 400


def _production_modules() -> list[Path]:
    modules = [path for package in PACKAGES for path in (ROOT / package).rglob("*.py")]
    # a migration is a record of what was done, never edited again: its length is history, not design
    return sorted(path for path in modules if "migrations" not in path.relative_to(ROOT).parts)


def test_no_production_module_is_over_400_lines() -> None:
    modules = _production_modules()
    assert len(modules) > 50  # the walk found the packages
    long = {
        str(path.relative_to(ROOT)): lines
        for path in modules
        if (lines := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert long == {}, f"split these along their natural parts (at most {MAX_LINES} lines): {long}"
