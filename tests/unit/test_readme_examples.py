"""The README's "Python API" examples run, in order, against a fresh SQLite registry."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def python_examples() -> list[str]:
    """The ```python blocks under the "## Python API" heading."""
    text = README.read_text(encoding="utf-8")
    start = text.index("\n## Python API\n")
    end = text.index("\n## ", start + 1)
    return re.findall(r"```python\n(.*?)```", text[start:end], flags=re.S)


def test_readme_has_python_api_examples() -> None:
    blocks = python_examples()
    assert len(blocks) >= 3
    assert any("pgmlops.load(" in b for b in blocks)
    assert any("Client(" in b for b in blocks)


def test_readme_python_api_examples_run(tmp_path: Path) -> None:
    script = "\n".join(python_examples())
    # Only this temp folder: the default settings put the registry in ./.pgmlops.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PGMLOPS_")}
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "churn 1 1 roc_auc" in done.stdout
    assert (tmp_path / ".pgmlops" / "pgmlops.db").exists()
    assert (tmp_path / "other.db").exists()
