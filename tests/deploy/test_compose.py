"""docker-compose.yml against the Compose Specification schema, and the start order it promises.

Docker is not available here, so `docker compose config` cannot run: the vendored schema (see README.md
beside this file) is what CI checks.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SCHEMA = Path(__file__).with_name("compose_spec.json")


@pytest.fixture(scope="module")
def raw() -> str:
    return (REPO / "docker-compose.yml").read_text()


@pytest.fixture(scope="module")
def compose(raw: str) -> dict[str, Any]:
    data = yaml.safe_load(raw)  # resolves the x- anchors and `<<` merges as Compose does
    assert isinstance(data, dict)
    return data


def validator() -> jsonschema.Draft201909Validator:
    # The file says draft 2019-09 with an http:// URI that jsonschema does not map; name the draft.
    schema = json.loads(SCHEMA.read_text())
    assert schema["$schema"].startswith("http://json-schema.org/draft/2019-09/")
    return jsonschema.Draft201909Validator(schema)


def uses_database(service: dict[str, Any]) -> bool:
    return "SKINSCREEN_DATABASE_URL" in (service.get("environment") or {})


def test_the_compose_file_matches_the_compose_specification(compose: dict[str, Any]) -> None:
    errors = sorted(validator().iter_errors(compose), key=lambda e: list(e.absolute_path))

    assert not errors, "\n".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)


def test_the_schema_check_catches_a_misspelt_key(compose: dict[str, Any]) -> None:
    broken = json.loads(json.dumps(compose))
    broken["services"]["review"]["healthcheck"]["intervall"] = "5s"
    broken["services"]["proxy"]["depends_on"]["review"]["condition"] = "service_ready"

    messages = [e.message for e in validator().iter_errors(broken)]
    assert any("intervall" in m for m in messages)
    assert any("service_ready" in m for m in messages)


def test_every_service_using_the_database_waits_for_the_migration(compose: dict[str, Any]) -> None:
    services = compose["services"]
    users = {name for name, s in services.items() if uses_database(s) and name != "migrate"}

    assert {"ingest", "worker", "worker-gpu", "review"} <= users
    for name in sorted(users):
        depends = services[name].get("depends_on") or {}
        assert isinstance(depends, dict), f"{name}: depends_on needs conditions"
        assert depends.get("migrate", {}).get("condition") == "service_completed_successfully", name
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_every_long_running_service_has_a_healthcheck(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        if service.get("restart") != "no":  # the one-shot migrate and db-roles exit when done
            assert service.get("healthcheck", {}).get("test"), name


def test_the_review_server_sits_behind_a_tls_proxy(compose: dict[str, Any], raw: str) -> None:
    services = compose["services"]
    review, proxy = services["review"], services["proxy"]

    assert review["command"][0] == "serve"
    assert "ports" not in review  # reachable only through the proxy
    assert proxy["image"].startswith("caddy:")
    assert proxy["depends_on"]["review"]["condition"] == "service_healthy"
    assert any(p.endswith(":443") for p in proxy["ports"])
    caddyfile = (REPO / "deploy" / "Caddyfile").read_text()
    assert "reverse_proxy review:8000" in caddyfile
    assert re.search(r"tls \{\$SKINSCREEN_TLS:internal\}", caddyfile)
    assert "./deploy/Caddyfile:/etc/caddy/Caddyfile:ro" in proxy["volumes"]


def test_required_secrets_come_from_env_and_refuse_to_start_without(compose: dict[str, Any]) -> None:
    env = compose["services"]["review"]["environment"]

    assert env["SKINSCREEN_SECRET_KEY"].startswith("${SKINSCREEN_SECRET_KEY:?")
    assert env["SKINSCREEN_SECURE_COOKIES"] == "${SKINSCREEN_SECURE_COOKIES:-true}"
    assert "${SKINSCREEN_APP_DB_PASSWORD:?" in env["SKINSCREEN_DATABASE_URL"]
    example = (REPO / ".env.example").read_text()
    required = ("POSTGRES_PASSWORD", "SKINSCREEN_APP_DB_PASSWORD", "SKINSCREEN_SECRET_KEY")
    for name in (*required, "SKINSCREEN_SECURE_COOKIES", "SKINSCREEN_TLS"):
        assert re.search(rf"^{name}=", example, re.M), name


def test_services_connect_as_the_app_role_and_only_the_migration_as_the_owner(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    users = {name for name, s in services.items() if uses_database(s)}

    assert {"ingest", "worker", "worker-gpu", "review", "dicom-listen", "migrate"} <= users
    for name in sorted(users - {"migrate"}):
        url = services[name]["environment"]["SKINSCREEN_DATABASE_URL"]
        assert url.startswith("postgresql+psycopg://skinscreen_app:${SKINSCREEN_APP_DB_PASSWORD:?"), name
        assert services[name]["depends_on"]["db-roles"]["condition"] == "service_completed_successfully", name
    owner = services["migrate"]["environment"]["SKINSCREEN_DATABASE_URL"]
    assert owner.startswith("postgresql+psycopg://skinscreen:${POSTGRES_PASSWORD:?")
    roles = services["db-roles"]
    assert "./docs/app-role.sql:/app-role.sql:ro" in roles["volumes"]
    assert "-f /app-role.sql" in roles["command"][-1] and "ALTER ROLE skinscreen_app" in roles["command"][-1]
    assert roles["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_dicom_listen_is_published_on_loopback_unless_an_interface_is_named(compose: dict[str, Any]) -> None:
    ports = compose["services"]["dicom-listen"]["ports"]

    assert ports == ["${SKINSCREEN_DICOM_BIND:-127.0.0.1}:${SKINSCREEN_DICOM_PORT_HOST:-11112}:11112"]
    assert "SKINSCREEN_DICOM_ALLOW" in compose["services"]["dicom-listen"]["environment"]


def test_the_proxy_never_passes_metrics_and_prometheus_scrapes_them_inside(compose: dict[str, Any]) -> None:
    caddyfile = (REPO / "deploy" / "Caddyfile").read_text()
    lines = [line.strip() for line in caddyfile.splitlines() if not line.strip().startswith("#")]

    assert "respond /metrics* 404" in lines
    assert lines.index("respond /metrics* 404") < lines.index("reverse_proxy review:8000")
    prometheus = yaml.safe_load((REPO / "deploy" / "prometheus.yml").read_text())
    targets = [
        t for job in prometheus["scrape_configs"] for c in job.get("static_configs", []) for t in c["targets"]
    ]
    assert "review:9464" in targets
    assert compose["services"]["review"]["environment"]["SKINSCREEN_METRICS_PORT"] == "9464"
    assert "ports" not in compose["services"]["prometheus"] or all(
        p.startswith("127.0.0.1:") for p in compose["services"]["prometheus"]["ports"]
    )
