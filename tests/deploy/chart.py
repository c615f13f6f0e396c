"""The Helm chart (deploy/helm/nbplane) rendered by Helm's own library (helm-python-sdk), as
`helm template` would, for the chart tests and the end-to-end install."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import helm_python
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "nbplane"
IMAGES = ROOT / "deploy" / "images"
STORE_URL = "postgresql+psycopg://nbplane:s3cret-pw@postgres-rw.db.svc:5432/nbplane"

REALISTIC: dict[str, Any] = {
    "existingSecret": "nbplane-credentials",
    "ingress": {
        "enabled": True,
        "className": "nginx",
        "host": "nbplane.example.org",
        "annotations": {"cert-manager.io/cluster-issuer": "letsencrypt"},
        "tls": {"enabled": True},
    },
    "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}}},
    "web": {"replicas": 3},
    "sessions": {"storageClass": "fast", "storage": "5Gi"},
    "extraEnv": [{"name": "NBPLANE_SESSION_MAX_PER_USER", "value": "2"}],
}
"""What a platform team sets: its own Secret, an Ingress with TLS, a ServiceMonitor."""


def render(
    values: dict[str, Any] | None = None, *, name: str = "nbplane", namespace: str = "nb"
) -> list[dict[str, Any]]:
    """Every manifest the chart renders with ``values`` (NOTES.txt aside)."""
    rendered = helm_python.Chart.load(CHART).render(
        values or {}, name=name, namespace=namespace, is_install=True
    )
    return [
        document
        for template, text in sorted(rendered.items())
        if template.endswith((".yaml", ".yml"))
        for document in yaml.safe_load_all(text)
        if document
    ]


def find(manifests: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    """The one manifest of ``kind`` (and ``name``)."""
    found = [m for m in manifests if m["kind"] == kind and name in (None, m["metadata"]["name"])]
    assert len(found) == 1, f"{len(found)} {kind} {name or ''} in {[m['kind'] for m in manifests]}"
    return found[0]


def containers(manifests: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """(workload name, container) of every Deployment and Job."""
    return [
        (m["metadata"]["name"], container)
        for m in manifests
        if m["kind"] in ("Deployment", "Job")
        for container in m["spec"]["template"]["spec"]["containers"]
    ]
