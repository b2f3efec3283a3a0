"""Run the HTTP service with uvicorn, one process per worker."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import tempfile

from pgmlops.api.observability import configure_logging
from pgmlops.api.workers import (
    WorkerPool,
    bind_reuse_port,
    reuse_port_supported,
    serve_on,
    uvicorn_config,
)
from pgmlops.config import Settings


def run_server(
    settings: Settings,
    *,
    host: str,
    port: int,
    workers: int,
    model_name: str | None = None,
    config_file: str | None = None,
    demo: bool = False,
    model_names: list[str] | None = None,
) -> None:
    """Serve `create_app` in `workers` processes; settings reach them through the environment.

    `model_names` (several models in one server, the default first) are already resolved and
    checked (services.serving.served_model_names), so workers need not list the registry.
    """
    import uvicorn

    if config_file:
        os.environ["PGMLOPS_CONFIG"] = str(config_file)
    if model_name:
        os.environ["PGMLOPS_MODEL_NAME"] = model_name
    if model_names and len(model_names) > 1:
        os.environ["PGMLOPS_MODEL_NAME"] = model_names[0]
        os.environ["PGMLOPS_SERVING__MODELS"] = json.dumps(model_names)
        os.environ["PGMLOPS_SERVING__ALL_MODELS"] = "false"
    elif model_names:
        os.environ["PGMLOPS_MODEL_NAME"] = model_names[0]
        os.environ["PGMLOPS_SERVING__MODELS"] = "[]"
        os.environ["PGMLOPS_SERVING__ALL_MODELS"] = "false"
    if demo and settings.api_key is None and not os.environ.get("PGMLOPS_API_KEY"):
        os.environ["PGMLOPS_API_KEY"] = secrets.token_urlsafe(24)
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Each worker writes its metrics to files here; /metrics sums them across workers.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="pgmlops-metrics-")
    if demo:
        key = os.environ.get("PGMLOPS_API_KEY") or (
            settings.api_key.get_secret_value() if settings.api_key else ""
        )
        base = f"http://{host}:{port}"
        print(f"\nserving on {base}  (web page: {base}/   API docs: {base}/docs)")
        print(f"admin API key: {key}")
        print(
            f"try: curl -s {base}/predict -H 'Content-Type: application/json' -d "
            '\'{"CreditScore": 600, "Geography": "Germany", "Gender": "Female", '
            '"Age": 52, "Tenure": 3, "Balance": 120000, "NumOfProducts": 1, '
            '"HasCrCard": 1, "IsActiveMember": 0, "EstimatedSalary": 90000}\'\n',
            flush=True,
        )
    serving = settings.serving
    raise_open_files_limit()
    config = {
        "app": "pgmlops.api.app:create_app",
        "factory": True,
        "host": host,
        "port": port,
        "log_config": None,
        "access_log": False,
        "timeout_graceful_shutdown": 10,
        "http": "pgmlops.api.slow_clients:TimedHttpToolsProtocol",
        "timeout_keep_alive": serving.keep_alive_seconds,
        "header_timeout": serving.header_timeout_seconds,
        "body_timeout": serving.body_timeout_seconds,
    }
    if workers > 1 and reuse_port_supported():
        # The pool's own lines (start, a worker replaced) in the workers' JSON format.
        configure_logging(settings.log_level)
        code = WorkerPool(config, workers, settings.serving.log_drain_seconds).run()
        if code:
            raise SystemExit(code)
        return
    if workers == 1:
        # Bound here, not by uvicorn: a port in use is the same one-line error as with a pool.
        sock = bind_reuse_port(host, port, shared=False)
        serve_on(uvicorn_config(config), sock)
        return
    # Without SO_REUSEPORT (not Linux): uvicorn's own workers, the timeouts at their defaults.
    ours = ("header_timeout", "body_timeout")
    uvicorn.run(**{k: v for k, v in config.items() if k not in ours}, workers=workers)


def raise_open_files_limit() -> None:
    """Soft RLIMIT_NOFILE up to the hard limit: each client connection holds a descriptor.

    The usual soft limit of 1,024 would make the server refuse new clients (accept fails
    with EMFILE) once a thousand slow or idle connections are open.
    """
    try:
        import resource
    except ImportError:  # not on Windows
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65_536)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
