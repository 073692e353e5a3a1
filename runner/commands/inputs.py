"""`recipe verify`, `recipe fetch`, `recipe lock`: a recipe's inputs, content-addressed and checked."""

from __future__ import annotations

import contextlib
import json
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import click

from runner.atomicfile import write_text_atomic
from runner.errors import EXIT_CORRUPT, EXIT_FAIL, RecipeError, UsageError
from runner.inputs import manifest as mf
from runner.inputs.layout import inputs_root
from runner.recipe import load_recipe


@contextlib.contextmanager
def progress_bar(label: str, total: int | None) -> Iterator[Callable[[int], None]]:
    """A thread-safe byte counter drawn with rich on a terminal (stderr), silent otherwise. Without
    rich (the runner started from a bundle mounted into the miles base, which may lack it): a plain
    line every few seconds."""
    if not sys.stderr.isatty():
        yield lambda n: None
        return
    try:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )
    except ImportError:
        with plain_progress(label, total) as advance:
            yield advance
        return

    lock = threading.Lock()
    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  TimeRemainingColumn(), console=Console(stderr=True), transient=True) as p:
        task = p.add_task(label, total=total)

        def advance(n: int) -> None:
            with lock:
                p.advance(task, n)

        yield advance


@contextlib.contextmanager
def plain_progress(label: str, total: int | None, every_s: float = 5.0) -> Iterator[Callable[[int], None]]:
    import time

    lock, state = threading.Lock(), {"done": 0, "last": time.monotonic()}

    def advance(n: int) -> None:
        with lock:
            state["done"] += n
            if time.monotonic() - state["last"] >= every_s:
                state["last"] = time.monotonic()
                of = f" of {_human(total)}" if total else ""
                click.echo(f"{label}: {_human(state['done'])}{of}", err=True)

    yield advance
    click.echo(f"{label}: {_human(state['done'])} done", err=True)


def _human(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000
    return str(n)


@click.command("verify")
@click.argument("name", required=False)
@click.option("--inputs", "inputs_dir", type=click.Path(file_okay=False),
              help="Inputs root (default: $RECIPE_INPUTS_DIR, then ./inputs/NAME).")
@click.option("--manifest", "manifest_path", type=click.Path(dir_okay=False),
              help="Check this manifest instead of a recipe's (needs --root).")
@click.option("--root", type=click.Path(file_okay=False), help="Root the --manifest paths are relative to.")
@click.option("--recipe-files", is_flag=True, help="Check the recipe's own files against its tag manifest.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
@click.option("--workers", type=click.IntRange(1, 512), help="Files hashed at once (default: cores).")
@click.option("--all", "hash_all", is_flag=True,
              help="Hash every present file even when some are missing or of the wrong size.")
@click.option("--rehash", is_flag=True,
              help="Hash every file, trusting nothing from the verified-inputs cache (which is then refreshed).")
def verify_cmd(name: str | None, inputs_dir: str | None, manifest_path: str | None, root: str | None,
               recipe_files: bool, as_json: bool, workers: int | None, hash_all: bool, rehash: bool) -> int:
    """Check inputs against a checksum manifest: sizes first, then sha256 in parallel.

    \b
    recipe verify NAME [--inputs DIR]        the recipe's model and data
    recipe verify NAME --recipe-files        the recipe's own files (tag manifest)
    recipe verify --manifest FILE --root DIR any sha256sum-format manifest
    Exit 0: all match; 2: the manifest is malformed or empty; 4: files missing, of the wrong size,
    or unpinned (no hash in the manifest: read them, then `recipe lock NAME --trust-fetched`);
    5: content differs, changed while hashed, or unreadable. Files under the root that the
    manifest does not list are reported, not fatal (with --recipe-files they are: a file added to
    a recipe is an edit, exit 5).

    A file hashed before is trusted, not read again, while its size, mtime, ctime, inode and device
    are all unchanged (the verified-inputs cache in $RECIPE_CACHE_DIR, else the XDG cache dir);
    --rehash reads everything.
    """
    from runner.inputs.verify import default_cache, verify_manifest

    scan: tuple[str, ...] | None = ("",)
    if manifest_path or root:
        if name or inputs_dir or recipe_files:
            raise UsageError("verify: give NAME [--inputs DIR] or --manifest FILE --root DIR, not both")
        if not (manifest_path and root):
            raise UsageError("verify: --manifest FILE and --root DIR go together")
        man, base = Path(manifest_path), Path(root)
    elif not name:
        raise UsageError("verify: give a recipe NAME or --manifest FILE --root DIR")
    else:
        recipe = load_recipe(name)
        if recipe_files:
            if inputs_dir:
                raise UsageError("verify: --inputs does not apply to --recipe-files")
            from runner.inputs.tagmanifest import SHARED_DIRS, tag_manifest_path

            man, base = tag_manifest_path(recipe), recipe.dir.parent
            scan = (recipe.name, *SHARED_DIRS)
        else:
            man, base = recipe.path("manifest"), inputs_root(recipe, inputs_dir)
    m = mf.load(man)
    if name and not recipe_files:
        from runner.inputs.hub_pins import check_pins

        check_pins(recipe, m, str(man))
    cache = None if recipe_files else default_cache(base)
    with progress_bar(f"verify {man.name}", m.total_size or None) as advance:
        result = verify_manifest(man, base, workers=workers, progress=advance,
                                 hash_after_size_failure=hash_all, scan_extra=scan, cache=cache, rehash=rehash)
    for w in result.warnings:
        click.echo(f"warning: {w}", err=True)
    summary = result.summary()
    # Inputs may have extra files; a recipe may not: an added file is an edit the tag manifest missed.
    code = EXIT_CORRUPT if recipe_files and result.extra and result.ok else result.exit_code
    if as_json:
        click.echo(json.dumps({**summary, "exit_code": code}, indent=2))
        return code
    for f in result.problems + result.pinned:
        click.echo(f.describe())
    for rel in result.extra:
        click.echo(f"not covered {rel} (added since the tag manifest was written)" if recipe_files
                   else f"extra       {rel} (not in the manifest; ignored)")
    rate = result.bytes_hashed / result.seconds if result.seconds else 0
    counts = ", ".join(f"{v} {k}" for k, v in summary["counts"].items() if v and k not in ("ok", "pinned"))
    verdict = "OK" if result.ok else f"FAILED ({counts})"
    if result.ok and result.pinned:
        verdict += f" ({len(result.pinned)} pinned by git blob id, sha256 not yet recorded)"
    trusted = f"; {summary['trusted']} unchanged since hashed, trusted" if summary["trusted"] else ""
    click.echo(f"{len(result.files)} files, {_human(summary['bytes'])}, "
               f"hashed {_human(result.bytes_hashed)} in {result.seconds:.2f} s ({_human(rate)}/s, "
               f"{result.workers} workers{trusted}) under {base}: "
               f"{verdict if code == result.exit_code else 'FAILED'}")
    return code


@click.command("fetch")
@click.argument("name")
@click.option("--inputs", "inputs_dir", type=click.Path(file_okay=False),
              help="Inputs root (default: $RECIPE_INPUTS_DIR, then ./inputs/NAME).")
@click.option("--workers", type=click.IntRange(1, 64), default=4, show_default=True,
              help="Files downloaded at once.")
def fetch_cmd(name: str, inputs_dir: str | None, workers: int) -> None:
    """Download the recipe's model and data at the pinned revisions, checked against its manifest.

    Each file is hashed while it downloads and renamed into place only if it matches; an
    interrupted run resumes, and files already verified are skipped. The token, if the repos need
    one, is read from $HF_TOKEN.
    """
    from runner.inputs.hub_client import require_hub

    require_hub("fetch")
    from runner.inputs.fetch import fetch_manifest, sources_from_header
    from runner.inputs.hub_pins import check_pins

    recipe = load_recipe(name)
    man = recipe.path("manifest")
    m = mf.load(man)
    check_pins(recipe, m, str(man), require=True)
    root = inputs_root(recipe, inputs_dir)
    with progress_bar(f"fetch {name}", m.total_size or None) as advance:
        r = fetch_manifest(m, root, sources_from_header(m, str(man)), workers=workers, progress=advance,
                           log=lambda s: click.echo(s, err=True))
    click.echo(f"{len(r.downloaded)} downloaded, {len(r.resumed)} resumed, "
               f"{len(r.skipped)} already verified; "
               f"{_human(r.bytes_downloaded)} in {r.seconds:.1f} s; inputs in {root}")
    unpinned = [e.path for e in m.pinned_only if e.git_blob == mf.UNKNOWN]
    if unpinned:
        click.echo(f"{len(unpinned)} file(s) have no hash in {man.name} ({', '.join(unpinned)}): checked only "
                   f"against the git blob id the server gave, so runs refuse them; read them under {root}, then "
                   f"pin them: recipe lock {name} --trust-fetched")


@click.command("lock")
@click.argument("name")
@click.option("--recipe-files", is_flag=True,
              help="Only rewrite the recipe's tag manifest (recipe.sha256) from its files; no network.")
@click.option("--check", is_flag=True,
              help="Write nothing; exit 1 if the manifest would change or leaves out a file of the repo, "
                   "3 if the Hub cannot be reached.")
@click.option("--no-image", is_flag=True, help="Do not ask the registry for the image tag's digest.")
@click.option("--all-files", is_flag=True,
              help="List every file of the model repo, not only those the manifest lists now.")
@click.option("--trust-fetched", is_flag=True,
              help="No network: pin the sha256 of each file the manifest holds no hash of (git-blob: unknown), "
                   "as `recipe fetch` downloaded it under the inputs root. Every run then loads (code: executes) "
                   "it: read it first.")
@click.option("--inputs", "inputs_dir", type=click.Path(file_okay=False),
              help="With --trust-fetched: the inputs root (default: $RECIPE_INPUTS_DIR, then ./inputs/NAME).")
def lock_cmd(name: str, recipe_files: bool, check: bool, no_image: bool, all_files: bool, trust_fetched: bool,
             inputs_dir: str | None) -> int:
    """Rewrite the inputs manifest from the Hub's metadata at the pinned revisions (no weights read).

    Reports what changed, resolves the image tag to a digest where a registry is reachable, then
    refreshes the tag manifest. With --recipe-files, only the tag manifest is rewritten: run it
    after editing any recipe file. With --trust-fetched, files the manifest holds no hash of are
    pinned by the sha256 of what `recipe fetch` downloaded, with a warning for each.
    """
    from runner.inputs import tagmanifest

    if trust_fetched and (recipe_files or check or all_files):
        raise UsageError("lock: --trust-fetched goes alone (with --inputs DIR)")
    if inputs_dir and not trust_fetched:
        raise UsageError("lock: --inputs goes with --trust-fetched")
    if not (recipe_files or trust_fetched):
        from runner.inputs.hub_client import require_hub

        require_hub("lock")
    recipe = load_recipe(name)
    if recipe_files:
        return _lock_recipe_files(recipe, check)
    if trust_fetched:
        return _trust_fetched(recipe, inputs_dir)
    from runner.inputs.hub_pins import build_manifest, diff, resolve_image_digest

    path = recipe.path("manifest")
    old = mf.load(path) if path.is_file() else None
    if not no_image:  # first: said even when the Hub cannot be reached
        click.echo(resolve_image_digest(recipe.image).describe())
    findings: list[str] = []
    new = build_manifest(recipe, old, all_files=all_files, log=lambda s: click.echo(s, err=True), findings=findings)
    changes = diff(old, new)
    for line in changes or ["no change"]:
        click.echo(f"{path.name}: {line}")
    for line in findings:
        click.echo(f"{path.name}: ! {line}")
    if check:
        return EXIT_FAIL if changes or findings else 0
    from runner.inputs.fetch import hub_url
    from runner.inputs.pinned import trust_warning

    was = old.by_path() if old else {}
    for e in new.entries:  # a hash the bundle did not hold before comes from this server alone
        if e.sha256 and e.path in was and was[e.path].pinned_only and was[e.path].git_blob == mf.UNKNOWN:
            click.echo(trust_warning(recipe.name, e, f"{hub_url(None)} served at the pinned revision"), err=True)
    if old is None or mf.render(old) != mf.render(new):
        mf.write(new, path)
        click.echo(f"wrote {path}")
    changed, _ = tagmanifest.write(recipe)
    if changed:
        click.echo(f"wrote {tagmanifest.tag_manifest_path(recipe)}")
    return 0


def _trust_fetched(recipe, inputs_dir: str | None) -> int:
    from runner.inputs import pinned as pin
    from runner.inputs import tagmanifest
    from runner.inputs.hub_pins import check_pins

    path = recipe.path("manifest")
    m = mf.load(path)
    check_pins(recipe, m, str(path), require=True)
    root = inputs_root(recipe, inputs_dir)
    new, pinned = pin.pin_fetched(m, root)
    if not pinned:
        click.echo(f"nothing to pin: {path.name} holds a hash of every file")
        return 0
    for e, r in pinned:
        click.echo(pin.trust_warning(recipe.name, e, f"{r['repo']}@{r['revision'][:12]} sent to `recipe fetch`"),
                   err=True)
    mf.write(new, path)
    click.echo(f"wrote {path} ({len(pinned)} file(s) pinned by sha256)")
    if tagmanifest.write(recipe)[0]:
        click.echo(f"wrote {tagmanifest.tag_manifest_path(recipe)}")
    return 0


def _lock_recipe_files(recipe, check: bool) -> int:
    """The recipe's frozen run.sh (its launch rendered for the default cell), then its tag manifest."""
    from runner.inputs import tagmanifest
    from runner.plan.render import frozen_script

    path = tagmanifest.tag_manifest_path(recipe)
    script, frozen = recipe.path("run_script"), frozen_script(recipe)
    if frozen is not None and check and (not script.is_file() or script.read_text() != frozen):
        raise RecipeError(f"{script} is not the launch this checkout renders; regenerate it: recipe lock "
                          f"{recipe.name} --recipe-files", EXIT_FAIL)
    if frozen is not None and not check and (not script.is_file() or script.read_text() != frozen):
        write_text_atomic(script, frozen)
        script.chmod(0o755)
        click.echo(f"wrote {script}")
    if check:
        problems = tagmanifest.stale(recipe)
        for p in problems:
            click.echo(f"{path.name}: {p}")
        if problems:
            raise RecipeError(f"{path} is stale; regenerate it: recipe lock {recipe.name} --recipe-files",
                              EXIT_FAIL)
        return 0
    changed, missing = tagmanifest.write(recipe)
    for rel in missing:
        click.echo(f"{path.name}: {rel} is named in recipe.toml [files] but absent; not covered", err=True)
    click.echo(f"{'wrote' if changed else 'unchanged'} {path}")
    return 0
