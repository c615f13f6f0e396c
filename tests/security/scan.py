"""Looking for secrets where they must not be: in clear, hex or base64, in files and answers."""

from __future__ import annotations

import base64
from pathlib import Path


def encodings(secret: str) -> list[bytes]:
    """The secret's bytes, its hex, and its base64 (standard and URL-safe) at each of the three
    byte alignments, without the edge characters that depend on its neighbours, so an encoding
    is no hiding place."""
    raw = secret.encode()
    found = [raw, raw.hex().encode()]
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + raw)
        start, stop = -(-8 * shift // 6), 8 * (shift + len(raw)) // 6
        found += [encoded[start:stop], encoded[start:stop].translate(bytes.maketrans(b"+/", b"-_"))]
    return found


def findings(secrets: dict[str, str], places: list[tuple[str, bytes]]) -> list[str]:
    """``what in where`` for each secret found in any encoding in any place."""
    needles = {name: encodings(secret) for name, secret in secrets.items()}
    return [
        f"{name} in {where}"
        for where, content in places
        for name, forms in needles.items()
        if any(form in content for form in forms)
    ]


def files_under(root: Path, name: str) -> list[tuple[str, bytes]]:
    """Every file below ``root`` (databases and logs included) as a place to scan."""
    return [
        (f"{name}/{path.relative_to(root)}", path.read_bytes())
        for path in sorted(root.rglob("*"))
        if path.is_file()
    ]
