"""The deployment files at the repository root say what the platforms expect (static checks).

No Docker engine is needed: the Dockerfile is parsed into instructions and checked for what a
production image must have (slim base, the package installed, a non-root user, a health check
on /health without curl, the serve command), and .dockerignore is checked against the files the
Dockerfile copies.
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with comments dropped and continuations joined."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in (ROOT / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, args = full.partition(" ")
        instructions.append((keyword.upper(), args.strip()))
    assert not pending, "the Dockerfile ends inside a continued line"
    return instructions


def command_words(args: str) -> list[str]:
    """The words of a CMD/RUN argument in exec (JSON) or shell form."""
    if args.startswith("["):
        return json.loads(args)
    return shlex.split(args)


def only(instructions: list[tuple[str, str]], keyword: str) -> list[str]:
    return [args for kw, args in instructions if kw == keyword]


def test_procfile_runs_the_server_on_the_platform_port() -> None:
    lines = (ROOT / "Procfile").read_text().splitlines()
    assert lines == ["web: pgmlops serve --host 0.0.0.0 --port $PORT"]


def test_the_runtime_pins_agree_with_the_supported_pythons() -> None:
    assert (ROOT / ".python-version").read_text().strip() == "3.11"
    runtime = (ROOT / "runtime.txt").read_text().strip()
    assert re.fullmatch(r"python-3\.11\.\d+", runtime), runtime
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert ">=3.11" in requires.replace(" ", "")


def test_the_image_is_slim_python_311() -> None:
    bases = only(dockerfile(), "FROM")
    assert bases, "no FROM"
    assert bases[-1].split()[0] == "python:3.11-slim"


def test_the_image_installs_the_package_itself() -> None:
    installs = [
        words
        for words in (command_words(args) for args in only(dockerfile(), "RUN"))
        if "pip" in words and "install" in words
    ]
    assert installs, "no RUN pip install"
    words = installs[0]
    targets = [w for w in words[words.index("install") + 1 :] if not w.startswith("-")]
    copied_to = {command_words(args)[-1].rstrip("/") for args in only(dockerfile(), "COPY")}
    # `pip install .` from the build context, or of the directory the sources were copied to;
    # never editable (the sources do not stay in the image).
    assert "-e" not in words and "--editable" not in words
    assert targets and targets[0].rstrip("/") in ({".", "/tmp/pgmlops"} | copied_to), words


def test_the_server_runs_as_a_non_root_user() -> None:
    instructions = dockerfile()
    users = only(instructions, "USER")
    assert users, "no USER: the container would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    keywords = [kw for kw, _ in instructions]
    last_user = len(keywords) - 1 - keywords[::-1].index("USER")
    assert last_user < keywords.index("CMD"), "USER must come before CMD"
    # The user exists: it is created in the image (python:3.11-slim has no such user).
    assert any("useradd" in args and user in args for args in only(instructions, "RUN"))


def test_the_health_check_probes_health_without_curl() -> None:
    checks = only(dockerfile(), "HEALTHCHECK")
    assert len(checks) == 1, "exactly one HEALTHCHECK"
    check = checks[0]
    assert "/health" in check
    assert "curl" not in check and "wget" not in check, "the slim image has neither"
    command = command_words(check[check.index("CMD") + 3 :].strip())
    assert command[:2] == ["python", "-c"]
    compile(command[2], "<healthcheck>", "exec")  # the probe is valid Python
    assert "urllib" in command[2]
    exposed = {p.split("/")[0] for args in only(dockerfile(), "EXPOSE") for p in args.split()}
    port = re.search(r"127\.0\.0\.1:(\d+)/health", command[2])
    assert port, "the probe must ask the server inside the container (127.0.0.1:PORT/health)"
    assert port.group(1) in exposed, f"probes port {port.group(1)}, exposes {exposed}"


def test_the_image_serves_on_all_interfaces_on_the_exposed_port() -> None:
    instructions = dockerfile()
    assert only(instructions, "EXPOSE") == ["8000"]
    cmd = command_words(only(instructions, "CMD")[-1])
    assert cmd == ["pgmlops", "serve", "--host", "0.0.0.0", "--port", "8000"]


def _docker_ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""

    def regex(pattern: str) -> re.Pattern[str]:
        out = ""
        i = 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                out += "(?:.*/)?"
                i += 3
            elif pattern.startswith("**", i):
                out += ".*"
                i += 2
            elif pattern[i] == "*":
                out += "[^/]*"
                i += 1
            elif pattern[i] == "?":
                out += "[^/]"
                i += 1
            elif pattern[i] == "[":
                end = pattern.index("]", i)
                out += pattern[i : end + 1]
                i = end + 1
            else:
                out += re.escape(pattern[i])
                i += 1
        return re.compile(out)

    parts = path.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    ignored = False
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = raw[1:] if negate else raw
        pattern = pattern.strip("/")
        compiled = regex(pattern)
        if any(compiled.fullmatch(p) for p in prefixes):
            ignored = not negate
    return ignored


@pytest.mark.parametrize(
    ("path", "ignored"),
    [
        ("pyproject.toml", False),
        ("README.md", False),
        ("src/pgmlops/__init__.py", False),
        ("src/pgmlops/store/migrations/env.py", False),
        (".git/HEAD", True),
        (".venv/bin/python", True),
        (".pgmlops/pgmlops.db", True),
        ("tests/conftest.py", True),
        ("src/pgmlops/__pycache__/cli.cpython-311.pyc", True),
        ("src/pgmlops.egg-info/PKG-INFO", True),
    ],
)
def test_the_build_context_holds_the_package_and_nothing_local(path: str, ignored: bool) -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    patterns = [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]
    assert _docker_ignored(path, patterns) is ignored


def test_everything_the_dockerfile_copies_is_in_the_build_context() -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    patterns = [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]
    for args in only(dockerfile(), "COPY"):
        words = [w for w in command_words(args) if not w.startswith("--")]
        for source in words[:-1]:
            assert (ROOT / source).exists(), f"COPY {source}: no such file"
            assert not _docker_ignored(source, patterns), f"COPY {source} is in .dockerignore"
