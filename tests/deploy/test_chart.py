"""The Helm chart without a cluster: Helm's lint (strict), rendering with the defaults alone and
with a platform team's values, every manifest valid for the Kubernetes schemas, the Role exactly
what the code calls, and the chart, the image recipes and the settings agreeing."""

from __future__ import annotations

import json
import re
import tomllib
from typing import Any

import helm_python
import kubernetes_validate
import pytest
import yaml

import nbplane
from nbplane.settings import Settings
from tests.deploy.chart import CHART, IMAGES, REALISTIC, ROOT, STORE_URL, containers, find, render

SECRET_KEYS = {"NBPLANE_STORE_URL", "NBPLANE_DB_URL", "NBPLANE_SECRET_KEY", "NBPLANE_ADMIN_TOKEN"}
SCHEMA_VERSIONS = ["1.25", kubernetes_validate.utils.latest_version()]
"""The oldest and newest schemas kubernetes-validate ships; 1.20 (the test cluster's) is checked
by installing into it (tests/k8s/test_chart_install.py)."""
VALUES = [pytest.param({}, id="defaults"), pytest.param(REALISTIC, id="realistic")]


def test_lint_is_clean_in_strict_mode() -> None:
    for values in ({}, REALISTIC):
        report = helm_python.lint(CHART, values, strict=True, namespace="nb")
        assert report["errors"] == [] and report["messages"] == [], report


def test_versions_agree_with_the_package() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert chart["apiVersion"] == "v2"
    assert chart["version"] == chart["appVersion"] == nbplane.__version__ == project["version"]


@pytest.mark.parametrize("values", VALUES)
def test_every_manifest_is_valid_for_kubernetes(values: dict[str, Any]) -> None:
    manifests = render(values)
    kinds = {m["kind"] for m in manifests}
    assert {"Deployment", "Service", "ServiceAccount", "Role", "RoleBinding", "Job"} <= kinds
    for manifest in manifests:
        if manifest["kind"] == "ServiceMonitor":  # a CRD: checked by test_service_monitor
            continue
        for version in SCHEMA_VERSIONS:
            kubernetes_validate.validate(manifest, version, strict=True)


def test_defaults_render_the_three_roles_and_no_optional_parts() -> None:
    manifests = render()
    kinds = [m["kind"] for m in manifests]
    assert "Ingress" not in kinds and "ServiceMonitor" not in kinds
    secret = find(manifests, "Secret", "nbplane")
    assert set(secret["data"]) == {"secret-key", "admin-token"}  # no URL given: none invented
    for role, replicas in (("web", 2), ("worker", 1), ("control", 2)):
        deployment = find(manifests, "Deployment", f"nbplane-{role}")
        assert deployment["spec"]["replicas"] == replicas
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert container["command"] == ["nbplane"]
        assert container["args"] == [
            *("serve", "--role", role, "--host", "0.0.0.0", "--port", "8080"),
            *("--log-format", "json"),
        ]


@pytest.mark.parametrize("values", VALUES)
def test_pods_are_probed_unprivileged_and_get_secrets_by_reference(values: dict[str, Any]) -> None:
    manifests = render({**values, "store": {"url": STORE_URL}, "warehouse": {"url": STORE_URL}})
    for name, container in containers(manifests):
        env = {e["name"]: e for e in container["env"]}
        assert set(env) >= SECRET_KEYS, name
        for key in SECRET_KEYS:
            assert set(env[key]) == {"name", "valueFrom"}, key
            assert "secretKeyRef" in env[key]["valueFrom"], key
        assert STORE_URL not in json.dumps(container), name
        assert env["NBPLANE_STORE_MIGRATE"]["value"] == "false"
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert container["resources"]["requests"] and container["resources"]["limits"]
        if name.endswith("db-upgrade"):
            continue
        assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
        assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    for manifest in manifests:
        if manifest["kind"] in ("Deployment", "Job"):
            assert manifest["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"]
    if values.get("existingSecret"):
        assert not [m for m in manifests if m["kind"] == "Secret"]


def test_no_image_is_latest_and_the_defaults_match_the_settings() -> None:
    manifests = render(REALISTIC)
    images = {c["image"] for _, c in containers(manifests)}
    for _, container in containers(manifests):
        env = {e["name"]: e.get("value") for e in container["env"]}
        images |= {env["NBPLANE_KUBERNETES_IMAGE"], env["NBPLANE_KUBERNETES_SESSION_IMAGE"]}
    assert all(not image.endswith(":latest") and ":" in image for image in images), images
    settings = Settings()
    assert images == {settings.kubernetes_image, settings.kubernetes_session_image}
    assert settings.kubernetes_image == f"ghcr.io/nbplane/nbplane:{nbplane.__version__}"
    with pytest.raises(helm_python.HelmValuesError, match="tag"):
        render({"image": {"repository": "ghcr.io/nbplane/nbplane", "tag": "latest"}})


def test_migrations_run_in_a_hook_before_install_and_upgrade() -> None:
    manifests = render()
    job = find(manifests, "Job", "nbplane-db-upgrade")
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert set(annotations["helm.sh/hook-delete-policy"].split(",")) == {
        "before-hook-creation",
        "hook-succeeded",
    }
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["command"] + container["args"] == ["nbplane", "db", "upgrade"]
    # The Secret it reads must exist before it: a hook of lower weight.
    secret = find(manifests, "Secret")["metadata"]["annotations"]
    assert "pre-install" in secret["helm.sh/hook"]
    assert int(secret["helm.sh/hook-weight"]) < int(annotations["helm.sh/hook-weight"])
    # The chart's ServiceAccount is not created yet when the hook runs.
    assert "serviceAccountName" not in job["spec"]["template"]["spec"]


def test_ingress_and_public_url() -> None:
    manifests = render(REALISTIC)
    ingress = find(manifests, "Ingress")
    assert ingress["spec"]["tls"] == [
        {"hosts": ["nbplane.example.org"], "secretName": "nbplane-tls"}
    ]
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": "nbplane-web", "port": {"name": "http"}}
    find(manifests, "Service", "nbplane-web")
    (container,) = find(manifests, "Deployment", "nbplane-web")["spec"]["template"]["spec"][
        "containers"
    ]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["NBPLANE_PUBLIC_URL"] == "https://nbplane.example.org"
    assert env["NBPLANE_JOB_SERVER_URL"] == "http://nbplane-web.nb.svc:80"
    assert env["NBPLANE_SESSION_PUBLIC_URL"] == env["NBPLANE_JOB_SERVER_URL"]


def test_service_monitor() -> None:
    manifests = render(REALISTIC)
    monitor = find(manifests, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["endpoints"] == [{"port": "http", "path": "/metrics", "interval": "30s"}]
    service = find(manifests, "Service", "nbplane-metrics")
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    assert "app.kubernetes.io/component" not in service["spec"]["selector"]  # every role's pods


def test_bad_values_are_refused_naming_the_key() -> None:
    for values, key in (
        ({"web": {"replicas": "two"}}, "replicas"),
        ({"store": {"url": "mysql://x"}}, "url"),
        ({"ingres": {"enabled": True}}, "ingres"),
        ({"admin": {"token": "short"}}, "token"),
    ):
        with pytest.raises(helm_python.HelmValuesError, match=key):
            render(values)


# --- the Role against the code ---------------------------------------------------------------

_CALL = re.compile(r"\.(create|read|list|patch|replace|delete)_namespaced_([a-z_]+?)\b")
_VERBS = {"create": "create", "read": "get", "list": "list", "patch": "patch"}
_VERBS |= {"replace": "update", "delete": "delete"}
_RESOURCES = {
    "job": ("batch", "jobs"),
    "stateful_set": ("apps", "statefulsets"),
    "stateful_set_scale": ("apps", "statefulsets/scale"),
    "service": ("", "services"),
    "secret": ("", "secrets"),
    "persistent_volume_claim": ("", "persistentvolumeclaims"),
    "pod": ("", "pods"),
    "pod_log": ("", "pods/log"),
    "event": ("", "events"),
    "lease": ("coordination.k8s.io", "leases"),
}


def code_calls() -> set[tuple[str, str, str]]:
    """(API group, resource, verb) of every namespaced call of the Kubernetes client in nbplane."""
    calls = set()
    for path in (ROOT / "src" / "nbplane").rglob("*.py"):
        for verb, resource in _CALL.findall(path.read_text()):
            group, plural = _RESOURCES[resource]
            calls.add((group, plural, _VERBS[verb]))
    return calls


def test_the_role_grants_exactly_what_the_code_calls() -> None:
    role = find(render(), "Role")
    granted = {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    calls = code_calls()
    assert ("batch", "jobs", "create") in calls and ("apps", "statefulsets", "create") in calls
    assert not any("*" in grant for grant in granted)
    leases = {grant for grant in granted if grant[1] == "leases"}
    if not any(call[1] == "leases" for call in calls):  # the Lease's code is on its own branch
        assert {verb for _, _, verb in leases} <= {"create", "get", "update"}
        calls |= leases
    assert granted == calls


# --- the image recipes against the chart -----------------------------------------------------


def dockerfile(name: str) -> dict[str, Any]:
    """FROM lines, and ENTRYPOINT and CMD (exec form) of deploy/images/NAME/Dockerfile."""
    text = (IMAGES / name / "Dockerfile").read_text()
    found: dict[str, Any] = {"FROM": re.findall(r"^FROM (\S+)", text, re.M)}
    found["ARG"] = dict(re.findall(r"^ARG (\w+)=(\S+)", text, re.M))
    for instruction in ("ENTRYPOINT", "CMD", "USER"):
        lines = re.findall(rf"^{instruction} (.+)$", text, re.M)
        if lines:
            value = lines[-1]
            found[instruction] = json.loads(value) if value.startswith("[") else value
    return found


def test_the_chart_runs_the_image_entrypoint() -> None:
    image = dockerfile("nbplane")
    assert image["ENTRYPOINT"] == ["nbplane"]
    assert image["CMD"] == ["serve", "--role", "all", "--host", "0.0.0.0", "--port", "8080"]
    assert image["USER"] not in ("root", "0")
    assert image["FROM"][-1].startswith("python:3.11-slim")
    for name, container in containers(render()):
        assert container["command"] == image["ENTRYPOINT"], name
        if container["args"][0] == "serve":
            role = container["args"][2]
            assert container["args"][:7] == [
                "serve",
                "--role",
                role,
                *image["CMD"][3:],
            ], name
    session = dockerfile("session")
    base = session["ARG"]["BASE_IMAGE"]
    assert re.fullmatch(r"quay\.io/jupyter/base-notebook:\d{4}-\d{2}-\d{2}", base), base
    assert session["FROM"][-1] == "${BASE_IMAGE}"


def test_the_cli_accepts_every_command_the_chart_and_the_image_run() -> None:
    """Parsed by nbplane's own command line (not run): a renamed option fails here, not in a
    cluster."""
    import click

    from nbplane.cli import nbplane as cli

    image = dockerfile("nbplane")
    commands = [image["CMD"]] + [c["args"] for _, c in containers(render(REALISTIC))]
    commands += [c["args"] for _, c in containers(render({"apis": {"configMap": "apis"}}))]
    for args in commands:
        command: click.Command | None = cli
        rest = list(args)
        with click.Context(cli) as context:
            while isinstance(command, click.Group):
                command = command.get_command(context, rest.pop(0))
            assert command is not None, args
            command.make_context(command.name, rest, parent=context)  # exits 2 on bad options
