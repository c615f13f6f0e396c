"""The images a session may ask for, checked with their container registry before Kubernetes
tries to pull them: a client of the Docker Registry HTTP API v2 that asks, anonymously, whether
the registry has an image's manifest."""

from __future__ import annotations

import fnmatch
import ipaddress
import logging
import re
from dataclasses import dataclass

import httpx

from nbplane.errors import InvalidInput
from nbplane.settings import Settings

log = logging.getLogger("nbplane.sessions")

REGISTRY_TIMEOUT = 10.0
MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)
DOCKER_HUB = "registry-1.docker.io"
_CHALLENGE = re.compile(r'(\w+)="([^"]*)"')
_REPOSITORY = re.compile(
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
)
_TAG = re.compile(r"\w[\w.-]{0,127}")
_DIGEST = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[0-9a-fA-F]{32,}")


@dataclass(frozen=True)
class ImageReference:
    """An image reference split as registries see it: ``jupyter/base-notebook`` is
    ``registry-1.docker.io``, ``jupyter/base-notebook``, tag ``latest``."""

    registry: str
    repository: str
    reference: str
    """A tag or a digest."""

    @property
    def separator(self) -> str:
        return "@" if ":" in self.reference else ":"

    @property
    def canonical(self) -> str:
        registry = "docker.io" if self.registry == DOCKER_HUB else self.registry
        return f"{registry}/{self.repository}{self.separator}{self.reference}"

    @classmethod
    def parse(cls, image: str) -> ImageReference:
        """Docker's reference grammar: ``[registry/]repository[:tag][@digest]``."""
        rest, _, digest = image.strip().partition("@")
        first, _, remainder = rest.partition("/")
        if remainder and ("." in first or ":" in first or first == "localhost"):
            registry, path = first, remainder
        else:
            registry, path = DOCKER_HUB, rest
        name, _, tag = path.rpartition(":") if ":" in path else (path, "", "")
        if registry in (DOCKER_HUB, "docker.io", "index.docker.io"):
            registry = DOCKER_HUB
            name = name if "/" in name else f"library/{name}"
        valid = (
            _REPOSITORY.fullmatch(name)
            and (not tag or _TAG.fullmatch(tag))
            and (not digest or _DIGEST.fullmatch(digest))
        )
        if not valid:
            raise InvalidInput(
                f"{image!r} is not an image reference; expected [registry/]name[:tag][@digest], "
                "e.g. 'quay.io/jupyter/base-notebook:2024-12-02'",
                field="image",
            )
        return cls(registry, name, digest or tag or "latest")


async def manifest_exists(image: ImageReference) -> bool | None:
    """Whether the registry has the image's manifest: ``HEAD /v2/<name>/manifests/<tag>``,
    with an anonymous bearer token when the registry asks for one (Docker Hub, GHCR, Quay).
    None when it cannot tell: unreachable, failing, or asking for credentials."""
    host = image.registry.rpartition(":")[0] if image.registry.count(":") == 1 else image.registry
    scheme = "http" if _loopback(host) else "https"  # Docker's default insecure registries
    url = f"{scheme}://{image.registry}/v2/{image.repository}/manifests/{image.reference}"
    headers = {"Accept": MANIFEST_TYPES}
    try:
        async with httpx.AsyncClient(timeout=REGISTRY_TIMEOUT, follow_redirects=True) as http:
            response = await http.head(url, headers=headers)
            challenge = response.headers.get("www-authenticate", "")
            if response.status_code == 401 and challenge.lower().startswith("bearer "):
                token = await _anonymous_token(http, challenge, image.repository)
                if token is None:
                    return None
                headers["Authorization"] = f"Bearer {token}"
                response = await http.head(url, headers=headers)
                if response.status_code in (401, 403):
                    return False  # Docker Hub's answer for a repository that does not exist
    except httpx.HTTPError as exc:
        log.warning("cannot ask %s whether it has %s: %s", image.registry, image.repository, exc)
        return None
    if response.status_code == 200:
        return True
    if response.status_code == 404:
        return False
    log.warning(
        "%s answered HTTP %d about %s; leaving it to Kubernetes",
        image.registry,
        response.status_code,
        image.repository,
    )
    return None


async def _anonymous_token(http: httpx.AsyncClient, challenge: str, repository: str) -> str | None:
    """The token a ``Bearer realm=...,service=...,scope=...`` challenge hands out anonymously."""
    fields = dict(_CHALLENGE.findall(challenge))
    if "realm" not in fields:
        return None
    params = {"scope": fields.get("scope") or f"repository:{repository}:pull"}
    if "service" in fields:
        params["service"] = fields["service"]
    response = await http.get(fields["realm"], params=params)
    if response.status_code != 200:
        return None
    try:
        body = response.json()
    except ValueError:
        return None
    token = body.get("token") or body.get("access_token") if isinstance(body, dict) else None
    return token if isinstance(token, str) else None


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


async def check_image(image: str, settings: Settings) -> None:
    """Ask the image's registry whether it has the image, unless it is the default image or
    matches NBPLANE_KUBERNETES_SESSION_TRUSTED_IMAGES. Only a definite "no" refuses it: a
    registry that cannot be reached or asks for credentials leaves the answer to Kubernetes,
    whose pull error the session then shows."""
    if image == settings.kubernetes_session_image:
        return
    reference = ImageReference.parse(image)
    patterns = [p.strip() for p in settings.kubernetes_session_trusted_images.split(",")]
    if any(
        fnmatch.fnmatchcase(form, pattern)
        for pattern in patterns
        if pattern
        for form in (image, reference.canonical)
    ):
        return
    exists = await manifest_exists(reference)
    if exists is False:
        raise InvalidInput(
            f"image {image!r} not found: {reference.registry} has no {reference.repository}"
            f"{reference.separator}{reference.reference} that can be pulled anonymously "
            "(a private image's registry must be listed in "
            "NBPLANE_KUBERNETES_SESSION_TRUSTED_IMAGES)",
            field="image",
        )
