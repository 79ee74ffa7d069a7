"""The package's shape: subpackages by pipeline stage, each importing only the stages below it."""
import ast
import subprocess
import sys
from pathlib import Path

import fecsearch

PACKAGE = Path(fecsearch.__file__).parent

# Lowest first: a stage may import itself and any stage listed before it, never one after it.
STAGES = ["runtime", "faces", "models", "store", "vectors", "people", "data", "ingest", "query", "evaluation", "train", "serve", "cli"]


def stage_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "fecsearch" and parts[1] in STAGES else None


def imports_of(path: Path) -> set[str]:
    """Every fecsearch module a file imports, at module level or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        if isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{path}: relative import; fecsearch imports by absolute names")
    return {m for m in found if m.startswith("fecsearch")}


def test_every_module_lives_in_a_stage():
    loose = sorted(p.name for p in PACKAGE.glob("*.py") if p.name not in ("__init__.py", "__main__.py"))
    assert loose == []
    assert sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()) == sorted(STAGES)


def test_stages_import_only_downwards():
    upward = []
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        me = stage_of(".".join(rel.parts))
        if me is None:
            continue
        for module in imports_of(path):
            other = stage_of(module)
            if other and STAGES.index(other) > STAGES.index(me):
                upward.append(f"{rel}: imports {module} ({other} is above {me})")
    assert upward == []


def test_reading_configs_and_the_cli_needs_no_torch():
    """Model configs, labels, triplets and the command line load without torch (it takes seconds)."""
    code = ("import sys, fecsearch.cli, fecsearch.models.config, fecsearch.data.triplets, "
            "fecsearch.evaluation.rankdiff; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
