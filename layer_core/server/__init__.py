"""`layer serve`: the gates of one config over HTTP (extra `layer-core[server]`).

The app is `layer_core.server.app.create_app` (FastAPI); `serve` runs it under uvicorn. Nothing
here is imported by `import layer_core` or `Layer()`: FastAPI, uvicorn and prometheus-client
load only when a gateway starts.
"""

from __future__ import annotations

import ipaddress
import os
import tempfile
from typing import Any

from layer_core.server.keys import ApiKey, create_key, find_key, list_keys, parse_budget

__all__ = ["ApiKey", "create_key", "find_key", "is_loopback", "list_keys", "parse_budget", "serve"]

#: the JSON access log and the gateway's own messages on stderr; uvicorn's as uvicorn prints them
LOG_CONFIG: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(message)s"},
        "server": {"format": "%(levelname)s %(name)s: %(message)s"},
    },
    "handlers": {
        "access": {"class": "logging.StreamHandler", "formatter": "plain", "stream": "ext://sys.stderr"},
        "server": {"class": "logging.StreamHandler", "formatter": "server", "stream": "ext://sys.stderr"},
    },
    "loggers": {
        "layer.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
        "layer": {"handlers": ["server"], "level": "INFO", "propagate": False},
        "uvicorn": {"handlers": ["server"], "level": "INFO", "propagate": False},
        "uvicorn.error": {"level": "INFO"},
    },
}  # fmt: skip


def is_loopback(host: str) -> bool:
    """Whether `host` only takes connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    config: str | None = None,
    no_auth: bool = False,
    max_body_bytes: int = 1024 * 1024,
    timeout: float = 300.0,
    key_concurrency: int = 16,
    cors_origins: tuple[str, ...] = (),
    grace: float = 30.0,
    access_log: bool = True,
) -> None:
    """Run the gateway until SIGTERM or SIGINT: then stop accepting, let requests in flight
    finish for up to `grace` seconds, close the providers and write the ledger's queue."""
    import uvicorn

    from layer_core.server.app import SETTINGS_ENV, ServeSettings

    if no_auth and not is_loopback(host):
        raise ValueError(
            f"--no-auth serves anyone who can reach {host}: it is allowed only on a loopback "
            "host (127.0.0.1, ::1, localhost); make keys with `layer keys create` instead"
        )
    settings = ServeSettings(
        config=config,
        no_auth=no_auth,
        max_body_bytes=max_body_bytes,
        timeout=timeout,
        key_concurrency=key_concurrency,
        cors_origins=cors_origins,
    )
    os.environ[SETTINGS_ENV] = settings.to_env()
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # each worker writes its metrics here; /metrics sums them (see server.metrics)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="layer-metrics-")
    log_config = dict(LOG_CONFIG)
    if not access_log:
        log_config["loggers"] = {**LOG_CONFIG["loggers"], "layer.access": {"level": "WARNING"}}
    uvicorn.run(
        "layer_core.server.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        access_log=False,
        log_config=log_config,
        timeout_graceful_shutdown=int(grace),
        server_header=False,
        proxy_headers=False,
    )
