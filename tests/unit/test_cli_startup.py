"""CLI start-up: registry commands run without loading the ML stack.

The test suite and operators start many short `pgmlops` processes; scikit-learn, SciPy,
pandas and numpy cost seconds of imports each, and registry commands (models, db) use none.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ML_STACK = ("sklearn", "scipy", "pandas", "numpy")

# Runs the commands in one fresh interpreter, then imports the modules that
# `models --history` (refused rollbacks) and `models --card` (model cards) go through on a
# registry that has versions, and prints what was loaded on the last line.
_PROBE = """
import json, sys
from pgmlops.cli import main
codes = []
for argv in ARGVS:
    sys.argv = ["pgmlops", *argv]
    try:
        main()
    except SystemExit as exc:
        codes.append(exc.code)
    else:
        codes.append(0)
import pgmlops.client, pgmlops.services.commands, pgmlops.services.rollback.watch, pgmlops.views
import pgmlops.domain.registry.card
print(json.dumps({"codes": codes, "modules": sorted(sys.modules)}))
"""


def _loaded_after(argvs: list[list[str]], tmp_path: Path) -> tuple[list[object], set[str]]:
    env = {
        **os.environ,
        "PGMLOPS_DATABASE_URL": f"sqlite:///{tmp_path / 'registry.db'}",
        "PGMLOPS_ARTIFACT_ROOT": str(tmp_path / "artifacts"),
    }
    env.pop("PGMLOPS_CONFIG", None)
    done = subprocess.run(
        [sys.executable, "-c", _PROBE.replace("ARGVS", repr(argvs))],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return result["codes"], set(result["modules"])


def test_registry_commands_start_without_the_ml_stack(tmp_path: Path) -> None:
    argvs = [["db", "upgrade"], ["db", "current"], ["models"], ["models", "--json"]]
    codes, loaded = _loaded_after([*argvs, ["models", "--history"]], tmp_path)
    # The commands ran (the last one refuses: the default model is not registered).
    assert codes == [0, 0, 0, 0, 7]
    assert "pgmlops.store.registry.versions" in loaded
    assert [m for m in ML_STACK if m in loaded] == []
