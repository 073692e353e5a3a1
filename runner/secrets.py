"""Secrets travel only through the environment: find them, and redact them everywhere we write."""

from __future__ import annotations

import os
import re

# Known credentials, plus anything whose name says it is one.
KNOWN = ("WANDB_API_KEY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "DOCKER_PASSWORD", "REGISTRY_PASSWORD",
         "ENROOT_CREDENTIALS", "RAY_AUTH_TOKEN")
_PATTERN = re.compile(r"(TOKEN|API_KEY|SECRET|PASSWORD|PASSWD|CREDENTIAL)", re.IGNORECASE)


def is_secret(name: str) -> bool:
    return name in KNOWN or bool(_PATTERN.search(name))


def present_secret_names(environ: dict[str, str] | None = None) -> list[str]:
    """Names of the known secrets set (non-empty) in the environment, for passing by name."""
    environ = os.environ if environ is None else environ
    return [n for n in KNOWN if environ.get(n)]


def redact_env(env: dict[str, str]) -> dict[str, str]:
    """A copy with every secret value replaced by a reference to its name."""
    return {k: (f"${k}" if is_secret(k) else v) for k, v in env.items()}


def secret_values(environ: dict[str, str] | None = None) -> list[str]:
    """Values of secrets currently set (for scrubbing logs); ignores trivially short values."""
    environ = os.environ if environ is None else environ
    return [v for k, v in environ.items() if is_secret(k) and len(v) >= 6]
