"""The README and the documentation pages show only examples that work.

The `python` blocks of docs/python-api.md run, in order, against a fresh SQLite registry;
every `pgmlops …` command line in the README's and the pages' code blocks parses with the
real command line; the README stays a two-screen tour whose Quickstart is `make demo` and
`make test`.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
PYTHON_API = ROOT / "docs" / "python-api.md"
PAGES = sorted((ROOT / "docs").glob("*.md"))


def python_examples() -> list[str]:
    """The ```python blocks of the Python API page."""
    text = PYTHON_API.read_text(encoding="utf-8")
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_the_python_api_page_has_examples() -> None:
    blocks = python_examples()
    assert len(blocks) >= 3
    assert any("pgmlops.load(" in b for b in blocks)
    assert any("Client(" in b for b in blocks)


def test_the_python_api_examples_run(tmp_path: Path) -> None:
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


def command_lines(path: Path) -> list[str]:
    """Each `pgmlops …` line of the file's code blocks, continuations joined, comments cut."""
    text = path.read_text(encoding="utf-8")
    found = []
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = line.strip().removeprefix("$ ")
            line = re.sub(r"^(?:[A-Z_]+=\S+\s+)+", "", line)  # VAR=value before the command
            if line.startswith("pgmlops ") or line == "pgmlops":
                found.append(line)
    return found


def parse(line: str) -> None:
    """Parse one command line with the real CLI, as far as choosing the command and its flags."""
    import typer.main

    from pgmlops.cli import app

    words = [w for w in shlex.split(line, comments=True) if w != "&"]
    command: Any = typer.main.get_command(app)
    ctx = command.context_class(command, info_name="pgmlops")
    rest = words[1:]
    # A group's first word names its subcommand (Typer vendors click: duck-typed).
    while hasattr(command, "list_commands") and rest and not rest[0].startswith("-"):
        name, *rest = rest
        sub = command.get_command(ctx, name)
        assert sub is not None, f"{line!r}: no command {name!r}"
        command = sub
        ctx = command.context_class(command, info_name=name, parent=ctx)
    command.make_context(ctx.info_name, rest, parent=ctx.parent)


DOCUMENTS = [README, *PAGES]


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: p.name)
def test_every_command_line_shown_parses_with_the_real_cli(path: Path) -> None:
    for line in command_lines(path):
        try:
            parse(line)
        except Exception as exc:  # the parser's own refusal, named with the line
            describe = getattr(exc, "format_message", None)
            message = describe() if describe else str(exc)
            pytest.fail(f"{path.name}: {line!r}: {message}")


def test_the_documents_show_commands_to_parse() -> None:
    assert len(command_lines(README)) >= 4
    assert sum(len(command_lines(p)) for p in PAGES) >= 40


def test_the_readme_is_a_two_screen_tour() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines; move the rest into docs/"


def test_the_quickstart_is_exactly_make_demo_and_make_test() -> None:
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Quickstart\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```[a-z]*\n(.*?)```", section, flags=re.S)
    commands = [ln.strip() for b in blocks for ln in b.splitlines() if ln.strip()]
    assert commands == ["make demo", "make test"]


def nav_pages() -> list[str]:
    """The Markdown files mkdocs.yml's nav lists."""
    text = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    nav = text.split("\nnav:\n", 1)[1]
    return re.findall(r"([\w-]+\.md)\s*$", nav, flags=re.M)


def test_the_readme_links_every_page_of_the_site() -> None:
    text = README.read_text(encoding="utf-8")
    pages = nav_pages()
    assert len(pages) >= 16
    for page in pages:
        assert (ROOT / "docs" / page).is_file(), f"mkdocs.yml lists a missing docs/{page}"
        assert f"(docs/{page})" in text, f"README.md's map does not link docs/{page}"
