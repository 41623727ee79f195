"""The deployment artefacts under deploy/, checked by the tools that consume them.

promtool checks the Prometheus config and alert rules and runs their unit tests; the
Kubernetes manifests validate against the API's JSON schemas (kubernetes-validate); the
compose file against the compose schema (docker compose / docker-compose, when present)
and for what the stack needs; the dashboard and the rules name only metrics the gateway
exports; the shipped gateway configs pass `lockgate check` with the variables that
.env.example and secret.example.yaml declare.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate.utils as k8s_schemas
import pytest
import yaml

from gateway.metrics import Metrics
from gateway.policy.loader import load_policies

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
PROMETHEUS = DEPLOY / "prometheus"
K8S = DEPLOY / "k8s"
DASHBOARD = DEPLOY / "grafana" / "lockgate.json"
KUBERNETES_VERSION = "1.29"  # the oldest release still common in managed clusters

needs_promtool = pytest.mark.skipif(shutil.which("promtool") is None,
                                    reason="promtool is not installed (Debian: apt-get install prometheus)")


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def run(*command: str, cwd: Path = ROOT, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, env=env, timeout=120)


# -- PromQL: which metrics a query reads ------------------------------------------------

_QUOTED_OR_BRACKETED = re.compile(r'"(?:[^"\\]|\\.)*"|\{[^}]*\}|\[[^\]]*\]')
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_NAME = re.compile(r"([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?")
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "group_left", "group_right", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """The metric names in a PromQL expression: identifiers that are not functions,
    keywords, label names or label values."""
    text = _GROUPING.sub(" ", _QUOTED_OR_BRACKETED.sub(" ", expr))
    return {match[1] for match in _NAME.finditer(text) if not match[2] and match[1] not in _KEYWORDS}


def exported_metric_names() -> set[str]:
    """Every sample name the gateway's registry can expose (counters as `_total`,
    histograms as `_bucket`/`_count`/`_sum`)."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}
    return {family.name + suffix for family in Metrics().registry.collect() for suffix in suffixes[family.type]}


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in load_yaml(PROMETHEUS / "alerts.yml")["groups"] for rule in group["rules"]]


def dashboard_panels() -> list[dict[str, Any]]:
    return [panel for panel in json.loads(DASHBOARD.read_text(encoding="utf-8"))["panels"]
            if panel["type"] != "row"]


def dashboard_queries() -> Iterator[tuple[str, str]]:
    for panel in dashboard_panels():
        for target in panel["targets"]:
            yield f"{panel['title']} [{target['refId']}]", target["expr"]


def as_plain_promql(expr: str) -> str:
    """A dashboard query with Grafana's variables replaced, so promtool can parse it."""
    for variable, value in (("$__rate_interval", "5m"), ("$__range", "1h"), ("$tenant", ".*"), ("$model", ".*")):
        expr = expr.replace(variable, value)
    return expr


# -- Prometheus ----------------------------------------------------------------------------

@needs_promtool
def test_prometheus_config_and_alert_rules_pass_promtool_check() -> None:
    for command in (("check", "rules", "alerts.yml"), ("check", "config", "prometheus.yml")):
        result = run("promtool", *command, cwd=PROMETHEUS)
        assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_alert_rule_unit_tests_pass() -> None:
    result = run("promtool", "test", "rules", "alerts_test.yml", cwd=PROMETHEUS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@needs_promtool
def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    rules = [{"record": f"dashboard:query_{index}", "expr": as_plain_promql(expr)}
             for index, (_, expr) in enumerate(dashboard_queries())]
    path = tmp_path / "dashboard_queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}), encoding="utf-8")
    result = run("promtool", "check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_firing_and_a_quiet_unit_test() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in load_yaml(PROMETHEUS / "alerts_test.yml")["tests"]:
        for check in case["alert_rule_test"]:
            (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {rule["alert"] for rule in alert_rules()}
    assert names - firing == set(), "alerts never shown to fire"
    assert names - quiet == set(), "alerts never shown to stay quiet"
    assert (firing | quiet) - names == set(), "tests of alerts that do not exist"


def test_every_alert_is_labelled_annotated_and_documented() -> None:
    readme = (DEPLOY / "README.md").read_text(encoding="utf-8")
    for rule in alert_rules():
        name = rule["alert"]
        assert rule["labels"]["severity"] in ("critical", "warning"), name
        assert set(rule["annotations"]) == {"summary", "description", "runbook"}, name
        assert f"#{name.lower()}" in rule["annotations"]["runbook"], name
        assert re.search(rf"^#+ {name}$", readme, re.MULTILINE), f"deploy/README.md has no section {name}"


def test_rules_and_dashboard_read_only_metrics_the_gateway_exports() -> None:
    exported = exported_metric_names() | {"up"}
    queries = [(rule["alert"], rule["expr"]) for rule in alert_rules()] + list(dashboard_queries())
    for where, expr in queries:
        names = metric_names(expr)
        assert names, f"{where}: no metric found in {expr!r}"
        assert names <= exported, f"{where}: unknown metric(s) {sorted(names - exported)}"


def test_metric_name_extraction() -> None:
    expr = ('histogram_quantile(0.99, sum by (model, le) (rate(lockgate_x_bucket{model=~"$model", le!="1"}'
            '[$__rate_interval]))) / on (model) group_left sum without (pod) (lockgate_y) > bool 0.5')
    assert metric_names(expr) == {"lockgate_x_bucket", "lockgate_y"}


# -- Grafana -------------------------------------------------------------------------------

def test_dashboard_is_templated_and_covers_the_gateway() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert dashboard["uid"] == "lockgate" and dashboard["schemaVersion"] >= 39
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert {"tenant", "model"} <= variables.keys()
    provisioned = load_yaml(DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml")
    assert variables["DS_PROMETHEUS"]["current"]["value"] == provisioned["datasources"][0]["uid"]

    panels = dashboard_panels()
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels:
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, panel["title"]
        sources = [panel["datasource"], *(target["datasource"] for target in panel["targets"])]
        assert all(source == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"} for source in sources), panel["title"]

    shown = {name for _, expr in dashboard_queries() for name in metric_names(expr)}
    for family in ("requests_total", "errors_total", "request_duration_seconds_bucket",
                   "time_to_first_token_seconds_bucket", "overhead_seconds_bucket", "tokens_total",
                   "cost_usd_total", "budget_used_ratio", "failovers_total", "circuit_open",
                   "policy_decisions_total", "approvals_pending"):
        assert f"lockgate_{family}" in shown, f"no panel shows lockgate_{family}"


# -- Kubernetes ------------------------------------------------------------------------------

def manifests() -> list[Path]:
    return sorted(path for path in K8S.glob("*.yaml") if path.name != "kustomization.yaml")


def k8s_documents() -> dict[tuple[str, str], dict[str, Any]]:
    """Every manifest by (kind, name)."""
    documents = {}
    for path in manifests():
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            documents[(document["kind"], document["metadata"]["name"])] = document
    return documents


@pytest.mark.parametrize("path", manifests(), ids=lambda path: path.name)
def test_manifest_validates_against_the_kubernetes_schema(path: Path) -> None:
    documents = [document for document in yaml.safe_load_all(path.read_text(encoding="utf-8")) if document]
    assert documents
    errors = []
    for document in documents:
        try:
            k8s_schemas.validate(document, KUBERNETES_VERSION, strict=True)
        except k8s_schemas.ValidationError as exc:
            where = ".".join(map(str, exc.path))
            errors.append(f"{document['kind']}/{document['metadata']['name']}: {where}: {exc.message}")
    assert errors == []


def test_kustomization_applies_every_manifest_but_the_secret_example() -> None:
    kustomization = load_yaml(K8S / "kustomization.yaml")
    expected = {path.name for path in manifests()} - {"secret.example.yaml"}
    assert sorted(kustomization["resources"]) == sorted(expected)
    assert kustomization["namespace"] == "lockgate"


def test_k8s_manifests_agree_with_each_other() -> None:
    documents = k8s_documents()
    deployment = documents[("Deployment", "lockgate")]
    pod = deployment["spec"]["template"]
    spec = pod["spec"]
    container = spec["containers"][0]
    labels = pod["metadata"]["labels"]

    # Selectors of the Deployment, Service and PDB all pick these pods; the HPA scales them.
    for selector in (deployment["spec"]["selector"]["matchLabels"],
                     documents[("Service", "lockgate")]["spec"]["selector"],
                     documents[("PodDisruptionBudget", "lockgate")]["spec"]["selector"]["matchLabels"]):
        assert selector.items() <= labels.items()
    assert documents[("HorizontalPodAutoscaler", "lockgate")]["spec"]["scaleTargetRef"]["name"] == "lockgate"

    # Config, policies and secrets come from the objects this directory defines.
    volumes = {volume["name"]: volume for volume in spec["volumes"]}
    mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
    config_path = Path(container["args"][container["args"].index("--config") + 1])
    config_map = volumes[mounts[str(config_path.parent)]]["configMap"]["name"]
    assert config_path.name in documents[("ConfigMap", config_map)]["data"]
    assert ("ConfigMap", volumes[mounts["/etc/lockgate/policies"]]["configMap"]["name"]) in documents
    assert container["envFrom"][0]["secretRef"]["name"] == "lockgate-secrets"
    assert ("Secret", "lockgate-secrets") in documents

    # Read-only root with a writable /tmp; probes on the gateway's health endpoints.
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert "emptyDir" in volumes[mounts["/tmp"]]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"

    # The pod is killed only after the preStop sleep and the full drain.
    gateway = yaml.safe_load(documents[("ConfigMap", config_map)]["data"][config_path.name])
    pre_stop = float(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert spec["terminationGracePeriodSeconds"] > pre_stop + gateway["server"]["drain_timeout_s"]


def test_k8s_gateway_config_and_policies_pass_lockgate_check(tmp_path: Path) -> None:
    """The ConfigMaps laid out as the pod mounts them, with the Secret's keys as environment."""
    documents = k8s_documents()
    config = tmp_path / "config" / "gateway.yaml"
    config.parent.mkdir()
    config.write_text(documents[("ConfigMap", "lockgate-config")]["data"]["gateway.yaml"], encoding="utf-8")
    (tmp_path / "policies").mkdir()
    for name, text in documents[("ConfigMap", "lockgate-policies")]["data"].items():
        (tmp_path / "policies" / name).write_text(text, encoding="utf-8")
    assert_deployable(config, tmp_path / "policies", documents[("Secret", "lockgate-secrets")]["stringData"])


def assert_deployable(config: Path, policies: Path, environment: dict[str, str]) -> None:
    """`lockgate check` passes with only `environment` set, and the policies load."""
    result = run(sys.executable, "-m", "gateway", "check", "--config", str(config),
                 env={"PATH": os.environ["PATH"], **environment})
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("ok:")
    policy_set, problems = load_policies(policies)
    assert problems == [] and policy_set is not None
    assert "default" in policy_set.names()


# -- docker compose ----------------------------------------------------------------------------

def env_example() -> dict[str, str]:
    lines = (DEPLOY / ".env.example").read_text(encoding="utf-8").splitlines()
    return dict(line.split("=", 1) for line in lines if line.strip() and not line.startswith("#"))


def compose_cli() -> list[str] | None:
    """`docker compose` (v2 plugin) or `docker-compose` (v1), whichever works here."""
    if shutil.which("docker") and run("docker", "compose", "version").returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def test_compose_file_passes_docker_compose_config(tmp_path: Path) -> None:
    cli = compose_cli()
    if cli is None:
        pytest.skip("no docker compose CLI (the structural test below still runs)")
    # A copy, so that the .env compose requires can be made from .env.example.
    shutil.copytree(DEPLOY, tmp_path / "deploy")
    shutil.copy(DEPLOY / ".env.example", tmp_path / "deploy" / ".env")
    result = run(*cli, "config", "-q", cwd=tmp_path / "deploy")
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_stack_is_wired_together() -> None:
    compose = load_yaml(DEPLOY / "docker-compose.yml")
    services = compose["services"]
    assert set(services) == {"lockgate", "postgres", "redis", "prometheus", "grafana"}
    lockgate = services["lockgate"]
    assert lockgate["build"]["context"] == ".." and (DEPLOY / ".." / lockgate["build"]["dockerfile"]).is_file()
    assert lockgate["depends_on"] == {"postgres": {"condition": "service_healthy"},
                                      "redis": {"condition": "service_healthy"}}
    for name, service in services.items():
        assert service["healthcheck"]["test"][0] == "CMD", name
    assert "pg_isready" in services["postgres"]["healthcheck"]["test"]

    # Every bind mount exists in the repository; the config is where `--config` looks.
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name}: {source} does not exist"
    targets = {volume.split(":")[1] for volume in lockgate["volumes"]}
    command = lockgate["command"]
    config = command[command.index("--config") + 1]
    assert config in targets
    assert str(Path(config).parent / "policies") in targets, "policies must sit beside the config"
    assert command[command.index("--host") + 1] == "0.0.0.0"

    # Every variable the file interpolates is declared in .env.example.
    variables = set(re.findall(r"\$\{(\w+)", (DEPLOY / "docker-compose.yml").read_text(encoding="utf-8")))
    assert variables <= env_example().keys()

    # Prometheus scrapes the gateway service and Grafana loads the dashboard file.
    scrape = load_yaml(PROMETHEUS / "prometheus.yml")["scrape_configs"]
    assert {"job_name": "lockgate", "targets": ["lockgate:8080"]} in [
        {"job_name": job["job_name"], "targets": job["static_configs"][0]["targets"]} for job in scrape]
    provider = load_yaml(DEPLOY / "grafana" / "provisioning" / "dashboards" / "lockgate.yml")["providers"][0]
    assert any(volume.startswith("./grafana/lockgate.json:" + provider["options"]["path"] + "/")
               for volume in services["grafana"]["volumes"])


def test_compose_gateway_config_and_policies_pass_lockgate_check(tmp_path: Path) -> None:
    """The config and the repository's policies laid out as the container mounts them."""
    config = shutil.copy(DEPLOY / "compose" / "gateway.yaml", tmp_path / "gateway.yaml")
    shutil.copytree(ROOT / "policies", tmp_path / "policies")
    assert_deployable(config, tmp_path / "policies", env_example())
