"""The Hugging Face Hub client as `recipe fetch` and `recipe lock` use it: present, bounded, honest.

- huggingface_hub is an optional part (the `hub` extra): `require_hub` says so, with the command
  that brings it, before anything else runs (exit 3), instead of a ModuleNotFoundError.
- Every request has a connect and a read timeout. huggingface_hub's shared httpx client has none
  (its factory passes timeout=None, and HfApi.repo_info / list_repo_tree pass None through), so a
  Hub that accepts a connection and never answers would hold `recipe fetch` forever. A request
  hook fills in any timeout left unset: RECIPE_HUB_TIMEOUT seconds (default 30) for connecting and
  for each read.
- A Hub that cannot be reached (refused, DNS, timed out) is "this machine cannot do it" (exit 3);
  a Hub that answers with an error is a failure of the command (exit 1).

The token comes from $HF_TOKEN only (never a saved token file, never argv).
huggingface_hub is imported inside the functions: the CLI must start without it.
"""

from __future__ import annotations

import importlib
import os

from runner.errors import EXIT_FAIL, EXIT_PREFLIGHT, RecipeError

DEFAULT_TIMEOUT_S = 30.0


def require_hub(verb: str) -> None:
    """Exit 3 with the command that installs the `hub` extra if huggingface_hub is missing or too old."""
    try:
        import huggingface_hub
    except ImportError:
        raise RecipeError(
            f"recipe {verb} needs the optional part 'hub' (huggingface_hub), which is not installed here: "
            f"pip install 'recipe-bundle[hub]' (in a checkout: `just fetch NAME`, or ci/bootstrap.sh hub "
            f"for .venv/bin/recipe {verb})", EXIT_PREFLIGHT) from None
    major = huggingface_hub.__version__.split(".")[0]
    if not major.isdigit() or int(major) < 1:
        raise RecipeError(f"recipe {verb} needs huggingface_hub >= 1.0 (an httpx session); found "
                          f"{huggingface_hub.__version__}: pip install -U 'recipe-bundle[hub]'", EXIT_PREFLIGHT)


def timeout_s() -> float:
    raw = os.environ.get("RECIPE_HUB_TIMEOUT", "")
    try:
        value = float(raw) if raw else DEFAULT_TIMEOUT_S
    except ValueError:
        raise RecipeError(f"RECIPE_HUB_TIMEOUT={raw!r}: expected seconds (a positive number)") from None
    if not 0 < value < 86400:
        raise RecipeError(f"RECIPE_HUB_TIMEOUT={raw!r}: expected seconds between 0 and 86400")
    return value


def http_lib():
    """The httpx flavour huggingface_hub's session is built on (httpx2 in 2.x, httpx in 1.x)."""
    from huggingface_hub.utils import get_session

    module = type(get_session()).__module__.split(".")[0]
    if module not in ("httpx", "httpx2"):
        import huggingface_hub

        raise RecipeError(f"recipe fetch needs huggingface_hub >= 1.0 (an httpx session); found "
                          f"{huggingface_hub.__version__}: pip install -U 'recipe-bundle[hub]'", EXIT_PREFLIGHT)
    return importlib.import_module(module)


def _fill_timeouts(request) -> None:
    """httpx request hook: any timeout left unset (None) becomes RECIPE_HUB_TIMEOUT seconds."""
    bound = timeout_s()
    t = dict(request.extensions.get("timeout") or {})
    for key in ("connect", "read", "write", "pool"):
        if t.get(key) is None:
            t[key] = bound
    request.extensions = {**request.extensions, "timeout": t}


def bounded_session():
    """huggingface_hub's shared client, with the timeout hook added (once per client: it can be
    recreated, so every Hub call of this package goes through here)."""
    from huggingface_hub.utils import get_session

    session = get_session()
    hooks = session.event_hooks
    if _fill_timeouts not in hooks["request"]:
        session.event_hooks = {**hooks, "request": [*hooks["request"], _fill_timeouts]}
    return session


def hub_token() -> str | bool:
    # False (not None): huggingface_hub would otherwise fall back to a token file on disk.
    return os.environ.get("HF_TOKEN") or False


def hub_errors() -> tuple[type[BaseException], ...]:
    """What a Hub call raises when the Hub says no or cannot be reached (HTTP errors, DNS, refused...)."""
    from huggingface_hub.errors import HfHubHTTPError

    return (HfHubHTTPError, OSError, http_lib().TransportError)


def unreachable(e: BaseException) -> bool:
    """True when the Hub never answered (refused, DNS, timeout), False when it answered an error."""
    from huggingface_hub.errors import HfHubHTTPError

    return not isinstance(e, HfHubHTTPError)


def failure_code(e: BaseException) -> int:
    return EXIT_PREFLIGHT if unreachable(e) else EXIT_FAIL


def one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())[:300]
    if not text or isinstance(e, http_lib().TimeoutException):
        text = f"{type(e).__name__}{': ' + text if text else ''} (no answer within {timeout_s():g} s; "
        text += "RECIPE_HUB_TIMEOUT sets the limit)"
    return text
