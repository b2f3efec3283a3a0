"""MkDocs hooks: render the reference pages from the code each time the site is built.

A page holds a marker (`<!-- pgmlops:settings-reference -->`, `cli-reference`,
`http-reference`) and the marker is replaced by tables generated from the settings model,
the Typer application and the app's OpenAPI schema, so the reference cannot drift from the
code. The checkout's own `src/` is imported, not whatever copy is installed.
"""

from __future__ import annotations

import ast
import inspect
import os
import sys
import tempfile
import textwrap
import types
import typing
from contextlib import contextmanager
from pathlib import Path
from typing import Any

SRC = Path(__file__).resolve().parents[1] / "src"
if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))

MARKER = "<!-- pgmlops:{}-reference -->"


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    """Replace each reference marker with the tables generated from the code."""
    renderers = {"settings": settings_reference, "cli": cli_reference, "http": http_reference}
    for name, render in renderers.items():
        marker = MARKER.format(name)
        if marker in markdown:
            markdown = markdown.replace(marker, render())
    return markdown


def cell(text: object) -> str:
    """Text safe inside a Markdown table cell: one line, pipes escaped."""
    return " ".join(str(text).split()).replace("|", "\\|")


def code(text: object) -> str:
    """Inline code in a table cell (backticks inside are doubled out of the way)."""
    value = cell(text)
    return f"`` {value} ``" if "`" in value else f"`{value}`"


# --- settings ---------------------------------------------------------------------------


def type_name(annotation: Any) -> str:
    """A reader's name for a field's type: `int`, `"fast" | "acknowledged"`, `list[str]`."""
    from pydantic import SecretStr

    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is type(None):
        return "null"
    if annotation is SecretStr:
        return "secret text"
    if origin is typing.Literal:
        return " | ".join(f'"{a}"' if isinstance(a, str) else str(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in args)
    if origin is not None:
        inner = ", ".join(type_name(a) for a in args)
        return f"{getattr(origin, '__name__', str(origin))}[{inner}]"
    if isinstance(annotation, type):
        return {"str": "text", "float": "number", "int": "integer", "bool": "boolean"}.get(
            annotation.__name__, annotation.__name__
        )
    return str(annotation).replace("typing.", "")


def bounds(info: Any) -> str:
    """The field's constraints (ge, lt, length, pattern) as text."""
    words = []
    for item in info.metadata:
        for attr, sign in (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<")):
            value = getattr(item, attr, None)
            if value is not None:
                words.append(f"{sign} {value:,}" if isinstance(value, int) else f"{sign} {value}")
        if getattr(item, "min_length", None) is not None:
            words.append(f"length ≥ {item.min_length}")
        if getattr(item, "max_length", None) is not None:
            words.append(f"length ≤ {item.max_length}")
        if getattr(item, "pattern", None) is not None:
            words.append(f"matches `{item.pattern}`")
    return ", ".join(words)


def source_comments(cls: type) -> dict[str, str]:
    """The `#` comment lines written right above each field of a class, joined."""
    try:
        lines = inspect.getsource(cls).splitlines()
    except (OSError, TypeError):
        return {}
    tree = ast.parse(textwrap.dedent("\n".join(lines)))
    comments: dict[str, str] = {}
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    for node in body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            above = []
            i = node.lineno - 2
            while i >= 0 and lines[i].strip().startswith("#"):
                above.insert(0, lines[i].strip().lstrip("#").strip())
                i -= 1
            if above:
                comments[node.target.id] = " ".join(above)
    return comments


def nested_model(annotation: Any) -> type | None:
    """The settings section a field holds (a pydantic model), if it holds one."""
    from pydantic import BaseModel

    candidates = [annotation, *typing.get_args(annotation)]
    for candidate in candidates:
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def default_text(info: Any) -> str:
    """The default as YAML would spell it; sections and required fields say so."""
    from pydantic_core import PydanticUndefined

    if info.default_factory is not None:
        value = info.default_factory()
    elif info.default is PydanticUndefined:
        return "required"
    else:
        value = info.default
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)) and not value:
        return "{}" if isinstance(value, dict) else "[]"
    if hasattr(value, "get_secret_value"):
        return "unset"
    return str(value)


def settings_sections() -> list[tuple[str, type, str]]:
    """Every settings section in order: (dotted path, model class, what holds it)."""
    from pgmlops.config import Settings

    out: list[tuple[str, type, str]] = []

    def visit(path: str, cls: type, note: str) -> None:
        # Depth first: a section's subsections follow it.
        out.append((path, cls, note))
        for name, info in cls.model_fields.items():
            inner = nested_model(info.annotation)
            if inner is not None:
                optional = type(None) in typing.get_args(info.annotation)
                child = f"{path}.{name}" if path else name
                visit(child, inner, "optional section" if optional else "")

    visit("", Settings, "")
    return out


def example_comments() -> dict[str, str]:
    """The `# comment` of each key in configuration.md's YAML example, by dotted key."""
    text = (Path(__file__).parent / "configuration.md").read_text(encoding="utf-8")
    block = text.split("```yaml\n", 1)[1].split("```", 1)[0] if "```yaml\n" in text else ""
    found: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    for line in block.splitlines():
        body = line.split(" #", 1)
        key = body[0].strip().split(":", 1)[0]
        if not key or key.startswith("#") or ":" not in body[0]:
            continue
        indent = len(line) - len(line.lstrip())
        while stack and stack[-1][0] >= indent:
            stack.pop()
        dotted = ".".join([*(k for _, k in stack), key])
        stack.append((indent, key))
        if len(body) > 1:
            found[dotted] = body[1].strip()
    return found


def settings_reference() -> str:
    """One table per settings section, from the pydantic models and their source comments."""
    parts = []
    examples = example_comments()
    for path, cls, note in settings_sections():
        title = f"`{path}`" if path else "Top level"
        parts.append(f"### {title}\n")
        # Its own docstring only: getdoc() would inherit pydantic's BaseModel text (and links).
        doc = inspect.cleandoc(cls.__dict__.get("__doc__") or "").split("\n\n")[0]
        if doc and not path:
            doc = "Keys at the top of `pgmlops.yaml`."
        lines = [cell(doc)] if doc else []
        if note:
            lines.append(f"An {note}: absent unless given.")
        if lines:
            parts.append(" ".join(lines) + "\n")
        comments = source_comments(cls)
        parts.append("| key | environment variable | type | default | what it does |")
        parts.append("| --- | --- | --- | --- | --- |")
        for name, info in cls.model_fields.items():
            if nested_model(info.annotation) is not None:
                continue
            key = f"{path}.{name}" if path else name
            env = "PGMLOPS_" + key.replace(".", "__").upper()
            kind = type_name(info.annotation)
            limit = bounds(info)
            what = "; ".join(t for t in (info.description, comments.get(name)) if t)
            if not what and key in examples:
                what = f"{examples[key]} (from the example above)"
            parts.append(
                f"| {code(key)} | {code(env)} | {cell(kind)}{', ' + cell(limit) if limit else ''}"
                f" | {code(default_text(info))} | {cell(what) or '—'} |"
            )
        parts.append("")
    return "\n".join(parts)


# --- command line -----------------------------------------------------------------------


def cli_reference() -> str:
    """Every command of the Typer app with its usage, arguments and options."""
    import typer.main

    from pgmlops.cli import EXIT_CODES, app
    from pgmlops.cli.monitor import FAIL_ON_EXIT
    from pgmlops.cli.options import error_code

    root = typer.main.get_command(app)
    parts: list[str] = []

    # Typer vendors its own click, so its classes are recognised by what they carry.
    def walk(command: Any, names: list[str], parent: Any) -> None:
        ctx = command.context_class(command, info_name=names[-1], parent=parent)
        if names[1:]:
            parts.append(f"## `{' '.join(names)}`\n")
            help_text = inspect.cleandoc(command.help or "")
            if help_text:
                parts.append(help_text + "\n")
            parts.append(f"```\n{command.get_usage(ctx).removeprefix('Usage: ')}\n```\n")
            params = [p for p in command.params if not getattr(p, "hidden", False)]
            if params:
                parts.append("| argument or option | type | default | what it does |")
                parts.append("| --- | --- | --- | --- |")
                for param in params:
                    parts.append(param_row(param, ctx))
                parts.append("")
        if hasattr(command, "list_commands"):
            for sub in command.list_commands(ctx):
                child = command.get_command(ctx, sub)
                if child is not None and not child.hidden:
                    walk(child, [*names, sub], ctx)

    walk(root, ["pgmlops"], None)
    codes = ["## Exit codes\n", "| exit code | error kind (`code` under `--json`) |"]
    codes.append("| --- | --- |")
    codes.append("| `0` | success |")
    codes.append("| `1` | any other error (`internal_error`) |")
    by_code: dict[int, list[str]] = {}
    for cls, number in EXIT_CODES.items():
        by_code.setdefault(number, []).append(f"`{error_code(cls.__new__(cls))}`")
    for number in sorted(by_code):
        codes.append(f"| `{number}` | {', '.join(by_code[number])} |")
    codes.append(f"| `{FAIL_ON_EXIT}` | `pgmlops monitor --fail-on`: the run's status reached it |")
    codes.append("| `2` | also: a flag the parser refuses, under `--json` (`usage_error`) |")
    return "\n".join([*parts, "", *codes]) + "\n"


def param_row(param: Any, ctx: Any) -> str:
    """One argument or option as a table row."""
    if param.param_type_name == "argument":
        name = param.human_readable_name.upper()
        what = "argument" + ("" if param.required else " (optional)")
    else:
        name = ", ".join([*param.opts, *param.secondary_opts])
        what = param.help or ""
        if param.multiple:
            what += " (may be repeated)"
        if param.required:
            what += " (required)"
    kind = "flag" if param.is_flag else str(param.display_type(ctx)).strip("<>")
    default = param.default
    shown = "—" if default in (None, (), []) or callable(default) else code(default)
    if param.is_flag and default is False:
        shown = "off"
    return f"| {code(name)} | {cell(kind)} | {shown} | {cell(what) or '—'} |"


# --- HTTP -------------------------------------------------------------------------------


@contextmanager
def bare_environment() -> Any:
    """No PGMLOPS_* variable of the building shell may change the app the schema comes from."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("PGMLOPS_")}
    for key in saved:
        del os.environ[key]
    try:
        yield
    finally:
        os.environ.update(saved)


def openapi_schema() -> dict[str, Any]:
    """The OpenAPI document of an app on an empty temporary registry (no model loaded)."""
    from pgmlops.api.app import create_app
    from pgmlops.config import Settings

    with bare_environment(), tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            database_url=f"sqlite:///{tmp}/pgmlops.db", artifact_root=f"{tmp}/artifacts"
        )
        return create_app(settings).openapi()


def schema_text(schema: dict[str, Any]) -> str:
    """A short name for a JSON schema: a component's name, a type, or their union."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return f"[{name}](#{anchor(name)})"
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return " or ".join(schema_text(s) for s in schema[key])
    if schema.get("type") == "array":
        return f"list of {schema_text(schema.get('items', {}))}"
    if "enum" in schema:
        return " | ".join(f"`{v}`" for v in schema["enum"])
    kind = schema.get("type", "any")
    if "format" in schema:
        kind += f" ({schema['format']})"
    if "title" in schema and kind == "object":
        return f"object {schema['title']}"
    return kind


def anchor(name: str) -> str:
    """The heading id MkDocs gives a schema's `### Name` heading."""
    return "schema-" + name.lower().replace("_", "-")


def http_reference() -> str:
    """Every route with its parameters, body and answers, then the schemas they use."""
    spec = openapi_schema()
    parts = [f"OpenAPI {spec['openapi']}, API version {spec['info']['version']}.\n"]
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            parts.append(f"## `{method.upper()} {path}`\n")
            for key in ("summary", "description"):
                if op.get(key):
                    parts.append(cell(op[key]) + "\n")
            params = op.get("parameters", [])
            if params:
                parts.append("| parameter | in | type | required | description |")
                parts.append("| --- | --- | --- | --- | --- |")
                for p in params:
                    parts.append(
                        f"| `{p['name']}` | {p['in']} | {cell(schema_text(p.get('schema', {})))}"
                        f" | {'yes' if p.get('required') else 'no'}"
                        f" | {cell(p.get('description', '')) or '—'} |"
                    )
                parts.append("")
            body = op.get("requestBody")
            if body:
                for media, content in body.get("content", {}).items():
                    parts.append(
                        f"Body (`{media}`): {cell(schema_text(content.get('schema', {})))}\n"
                    )
            parts.append("| status | meaning |")
            parts.append("| --- | --- |")
            for status, answer in op.get("responses", {}).items():
                parts.append(f"| `{status}` | {cell(answer.get('description', ''))} |")
            parts.append("")
    schemas = spec.get("components", {}).get("schemas", {})
    if schemas:
        parts.append("## Schemas\n")
    for name, schema in schemas.items():
        parts.append(f"### {name} {{ #{anchor(name)} }}\n")
        if schema.get("description"):
            parts.append(cell(schema["description"]) + "\n")
        props = schema.get("properties", {})
        required = set(schema.get("required", []))
        if props:
            parts.append("| field | type | required | description |")
            parts.append("| --- | --- | --- | --- |")
            for field, sub in props.items():
                parts.append(
                    f"| `{field}` | {cell(schema_text(sub))} | "
                    f"{'yes' if field in required else 'no'} | "
                    f"{cell(sub.get('description', '')) or '—'} |"
                )
            parts.append("")
        elif "enum" in schema:
            parts.append(f"One of {schema_text(schema)}.\n")
    return "\n".join(parts)
