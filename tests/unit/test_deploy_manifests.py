"""deploy/ and .github/workflows/ are valid for their platforms and name things that exist.

No cluster, Docker engine or network: Kubernetes manifests are checked against the schemas
kubernetes-validate ships, docker-compose.yml against check-jsonschema's vendored Compose
spec, the workflows with actionlint (its binary comes in a wheel), haproxy.cfg with
`haproxy -c` when HAProxy is installed (.ci/run installs it). Then every `pgmlops ...` command
is parsed by the real CLI, every probe path is a real route, every PGMLOPS_* variable a real
setting, and the ports agree.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from pydantic import BaseModel

from pgmlops.cli import app
from pgmlops.config import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
KUBE = sorted((DEPLOY / "kubernetes").glob("*.yaml"))
COMPOSE = DEPLOY / "docker-compose.yml"
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
BIN = Path(sys.executable).parent
SERVE_PORT = "8000"


def tool(name: str) -> str:
    """A dev-extra tool from this virtualenv (or PATH)."""
    found = shutil.which(name, path=f"{BIN}:{os.environ.get('PATH', '')}")
    assert found, f"{name} is missing: pip install -e '.[dev]'"
    return found


def kube_documents() -> list[dict[str, Any]]:
    return [doc for path in KUBE for doc in yaml.safe_load_all(path.read_text()) if doc]


def kube(kind: str, name: str) -> dict[str, Any]:
    found = [d for d in kube_documents() if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def containers() -> list[dict[str, Any]]:
    """Every container of every pod template in the manifests."""
    out = []
    for doc in kube_documents():
        spec = doc.get("spec", {})
        pod = spec.get("template", {}).get("spec") or spec.get("jobTemplate", {}).get("spec", {})
        out += pod.get("containers", [])
    return out


def commands() -> list[list[str]]:
    """Every pgmlops command line the deployment runs."""
    lines = [c["command"] + c.get("args", []) for c in containers() if "command" in c]
    lines += [s["command"] for s in compose()["services"].values() if "command" in s]
    return [line for line in lines if line[0] == "pgmlops"]


def env_names() -> set[str]:
    names = {e["name"] for c in containers() for e in c.get("env", [])}
    names |= set(kube("Secret", "pgmlops")["stringData"])
    for service in compose()["services"].values():
        names |= set(service.get("environment") or {})
    return {n for n in names if n.startswith("PGMLOPS_")}


def test_the_kubernetes_manifests_are_valid_resources() -> None:
    import kubernetes_validate

    assert KUBE, "no manifests under deploy/kubernetes"
    for doc in kube_documents():
        # strict: an unknown (e.g. misspelt) field is an error, not ignored.
        kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)
    kinds = sorted(d["kind"] for d in kube_documents())
    assert kinds.count("Deployment") == 2
    assert {"Service", "Job", "Secret"} <= set(kinds)


def test_an_invalid_manifest_is_caught() -> None:
    import kubernetes_validate

    bad = kube("Deployment", "pgmlops-api")
    bad["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGett"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, kubernetes_validate.latest_version(), strict=True)


def test_the_api_is_probed_on_ready_and_health_which_exist() -> None:
    from pgmlops.api.admin_routes import router

    routes = {(path, method) for r in router.routes for path in [r.path] for method in r.methods}
    (api,) = kube("Deployment", "pgmlops-api")["spec"]["template"]["spec"]["containers"]
    assert api["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert api["livenessProbe"]["httpGet"]["path"] == "/health"
    for probe in ("readinessProbe", "livenessProbe"):
        assert (api[probe]["httpGet"]["path"], "GET") in routes
        assert api[probe]["httpGet"]["port"] in {p["name"] for p in api["ports"]}
    balancer = (DEPLOY / "haproxy.cfg").read_text()
    check = re.search(r"option httpchk GET (\S+)", balancer)
    assert check and (check.group(1), "GET") in routes


def test_the_deployment_runs_real_commands_with_real_options() -> None:
    """Each command line is parsed by the CLI itself (not run): subcommands and options exist."""
    root = typer.main.get_command(app)
    seen = set()
    for line in commands():
        command = root
        words = line[1:]
        # Typer ships its own click: walk groups by their `commands`, not by isinstance.
        while getattr(command, "commands", None) is not None and words:
            sub = command.commands.get(words[0])
            assert sub is not None, f"{' '.join(line)}: no command {words[0]!r}"
            command, words = sub, words[1:]
        assert getattr(command, "commands", None) is None, f"{' '.join(line)}: a group"
        command.make_context(command.name, list(words))  # raises on an unknown option
        seen.add(command.name)
    assert {"upgrade", "serve", "worker"} <= seen


def test_every_pgmlops_variable_is_a_setting() -> None:
    for name in env_names():
        model: type[BaseModel] = Settings
        parts = name.removeprefix("PGMLOPS_").lower().split("__")
        for i, part in enumerate(parts):
            assert part in model.model_fields, f"{name}: no setting {part!r}"
            annotation = model.model_fields[part].annotation
            if i < len(parts) - 1:
                assert isinstance(annotation, type) and issubclass(annotation, BaseModel), name
                model = annotation
    assert {"PGMLOPS_DATABASE_URL", "PGMLOPS_SIGNING_KEY"} <= set(
        kube("Secret", "pgmlops")["stringData"]
    )


def test_ports_and_selectors_agree() -> None:
    api = kube("Deployment", "pgmlops-api")
    (container,) = api["spec"]["template"]["spec"]["containers"]
    assert container["command"][container["command"].index("--port") + 1] == SERVE_PORT
    assert {p["containerPort"] for p in container["ports"]} == {int(SERVE_PORT)}
    service = kube("Service", "pgmlops-api")
    labels = api["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert api["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert service["spec"]["ports"][0]["targetPort"] in {p["name"] for p in container["ports"]}
    worker = kube("Deployment", "pgmlops-worker")
    assert worker["spec"]["selector"]["matchLabels"] != api["spec"]["selector"]["matchLabels"]
    balancer = (DEPLOY / "haproxy.cfg").read_text()
    services = compose()["services"]
    for name in re.findall(r"^\s*server (\S+) \S+:(\d+)", balancer, re.M):
        assert name[0] in services and name[1] == SERVE_PORT


def test_the_compose_file_is_valid_and_migrates_before_serving() -> None:
    done = subprocess.run(
        [tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    services = compose()["services"]
    assert services["migrate"]["command"] == ["pgmlops", "db", "upgrade"]
    replicas = [n for n, s in services.items() if "serve" in s.get("command", [])]
    assert len(replicas) >= 2
    for name in [*replicas, "worker"]:
        after = services[name]["depends_on"]["migrate"]["condition"]
        assert after == "service_completed_successfully", name
    # Each replica keeps its own spill folder; all share one artifact store.
    data = [v for n in replicas for v in services[n]["volumes"] if v.endswith(":/data")]
    assert len(set(data)) == len(replicas)


def test_the_balancer_configuration_is_valid() -> None:
    if shutil.which("haproxy") is None:
        if os.environ.get("PGMLOPS_REQUIRE_POSTGRES") == "1":  # CI: .ci/run installs it
            pytest.fail("haproxy is not installed")
        pytest.skip("haproxy is not installed: apt-get install haproxy")
    done = subprocess.run(
        ["haproxy", "-c", "-f", str(DEPLOY / "haproxy.cfg")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_workflows_pass_actionlint() -> None:
    # No shellcheck/pyflakes: what actionlint runs must not depend on what else is installed.
    done = subprocess.run(
        [tool("actionlint"), "-shellcheck=", "-pyflakes=", *map(str, WORKFLOWS)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_retraining_runs_on_a_schedule_a_data_push_and_a_dispatch() -> None:
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "retrain.yml").read_text())
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    assert {"schedule", "workflow_dispatch", "push", "repository_dispatch"} <= set(triggers)
    assert triggers["push"]["paths"], "a push retrains only when the data changed"
    assert "data-changed" in triggers["repository_dispatch"]["types"]
