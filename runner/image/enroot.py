"""Container image references for enroot/pyxis: the URI enroot imports, and the `.sqsh` file name
keyed by the image digest.

enroot takes `docker://[USER@][REGISTRY#]IMAGE[:TAG|@DIGEST]` (a `#` separates the registry);
digest references need enroot 4.0 or newer. Credentials stay in $ENROOT_CONFIG_PATH/.credentials,
never on a command line.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from runner.errors import EXIT_PREFLIGHT, RecipeError, UsageError
from runner.image.ref import ImageRef, parse_image

__all__ = ["ImageRef", "parse_image"]  # re-exported: callers read references through runner/image/ref.py

MIN_DIGEST_VERSION = (4, 0)


def enroot_uri(reference: str) -> str:
    """The `docker://` URI enroot imports; with a digest, the tag is dropped (the digest decides)."""
    r = parse_image(reference)
    host = f"{r.registry}#" if r.registry else ""
    what = f"@{r.digest}" if r.digest else (f":{r.tag}" if r.tag else "")
    return f"docker://{host}{r.repository}{what}"


def pyxis_image(reference: str) -> str:
    """The `--container-image` value pyxis expects (enroot's URI without the scheme)."""
    return enroot_uri(reference).removeprefix("docker://")


def sqsh_name(reference: str) -> str:
    """File name of the staged image, keyed by its digest: `radixark+miles+sha256-<hex>.sqsh`."""
    r = parse_image(reference)
    if not r.digest:
        raise UsageError(f"image reference {reference!r} has no @sha256: digest; a staged .sqsh is keyed by digest")
    return f"{r.repository.replace('/', '+')}+sha256-{r.digest_hex}.sqsh"


def parse_version(text: str) -> tuple[int, ...] | None:
    m = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", text)
    if not m:
        return None
    return tuple(int(g) for g in m.groups() if g is not None)


def enroot_version(enroot: str = "enroot") -> tuple[int, ...]:
    """`enroot version`, parsed; RecipeError (exit 3) if enroot is absent or says something unexpected."""
    exe = shutil.which(enroot)
    if not exe:
        raise RecipeError("enroot not found on PATH; install enroot >= 4.0 (https://github.com/NVIDIA/enroot) "
                          "or stage the image on a machine that has it", EXIT_PREFLIGHT)
    proc = subprocess.run([exe, "version"], capture_output=True, text=True, timeout=30, check=False)
    v = parse_version(proc.stdout)
    if proc.returncode != 0 or v is None:
        raise RecipeError(f"`{exe} version` exited {proc.returncode} and printed {proc.stdout.strip()!r}; "
                          "cannot tell the enroot version", EXIT_PREFLIGHT)
    return v


def digest_too_old_message(version: tuple[int, ...], reference: str, out: Path) -> str:
    v = ".".join(map(str, version))
    r = parse_image(reference)
    return (f"enroot {v} cannot import by digest (needs >= 4.0); stage instead: on a machine with enroot >= 4.0 run "
            f"`recipe image sqsh --output-dir DIR` and copy {out.name} here, or `docker pull {reference}` and then "
            f"`enroot import -o {out} dockerd://{r.repository}:{r.tag or 'TAG'}` after `docker inspect` shows "
            f"{r.digest}")


def import_command(reference: str, out: Path, enroot: str = "enroot") -> list[str]:
    return [enroot, "import", "--output", str(out), enroot_uri(reference)]


def container_labels(rc: Path = Path("/etc/rc")) -> dict[str, str]:
    """The image's labels inside an enroot container: `enroot import` writes each one as a comment
    line `# KEY VALUE` at the top of the container's /etc/rc (NVIDIA/enroot src/docker.sh, v4.1.2,
    "Configure labels as comments"). Empty outside such a container."""
    try:
        text = rc.read_text(errors="replace")
    except OSError:
        return {}
    labels: dict[str, str] = {}
    for line in text.splitlines():
        m = re.match(r"^# (\S+) (.*)$", line)
        if not m:
            break
        labels[m.group(1)] = m.group(2)
    return labels
