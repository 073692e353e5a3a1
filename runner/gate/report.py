"""`recipe report`: one PNG per gated metric (series, band, bounds, failures) and an index.html.

matplotlib (extra `report`) is imported inside the functions, with the Agg backend, so nothing
here costs start-up time or needs a display; `require_matplotlib()` says which extra brings it
before any work starts.
"""

from __future__ import annotations

import html
import math
import re
from pathlib import Path
from typing import Any

from runner.atomicfile import write_bytes_atomic, write_text_atomic
from runner.console import safe
from runner.errors import EXIT_PREFLIGHT, RecipeError
from runner.gate.evaluate import BLOCKED, FAIL, PASS, UNREFERENCED, GateResult, expected_steps
from runner.gate.expected import Expected
from runner.gate.metrics import Series
from runner.gate.reference import load_reference
from runner.gate.units import axis_label

VERDICT_COLOR = {PASS: "#1a7f37", FAIL: "#cf222e", BLOCKED: "#9a6700", UNREFERENCED: "#6e7781"}


EXTRA_HINT = "pip install 'recipe-bundle[report]'"


def require_matplotlib() -> None:
    """`recipe report` needs the `report` extra; without it, say so (exit 3) before reading anything."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as e:
        raise RecipeError(f"recipe report needs matplotlib, which is not installed here ({e.__class__.__name__}: "
                          f"{e}); install the report extra: {EXTRA_HINT}", EXIT_PREFLIGHT) from None


def png_name(metric: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", metric) + ".png"


def plot_metric(metric: str, expected: Expected, series: Series, result: GateResult, reference: Series | None,
                path: Path, run_label: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    # Text from records and events (a run id, a metric name) is drawn as itself: `$...$` is not mathtext.
    with matplotlib.rc_context({"text.parse_math": False, "text.usetex": False}):
        return _plot_metric(metric, expected, series, result, reference, path, safe(run_label))


def _plot_metric(metric: str, expected: Expected, series: Series, result: GateResult, reference: Series | None,
                 path: Path, run_label: str) -> Path:
    import io

    import matplotlib.pyplot as plt

    rows = [r for r in result.rows if r.rule.metric == metric]
    values = series.values.get(metric, {})
    steps = expected_steps(metric, expected, series)
    fig, ax = plt.subplots(figsize=(7.5, 3.6), dpi=110)
    try:
        finite = [(s, v) for s, v in sorted(values.items()) if math.isfinite(v)]
        shown = [v for _, v in finite]   # what sets the y axis: the run's values and the reference's bands
        if finite:
            # NaN where a value is missing or not finite, so the line breaks there instead of bridging it
            xs = sorted(set(values) | set(steps.all(10_000) or ()))
            ys = [values[s] if s in values and math.isfinite(values[s]) else math.nan for s in xs]
            ax.plot(xs, ys, "o-", color="#0969da", lw=1.5, ms=4, label=metric, zorder=3)
        ref = reference.values.get(metric, {}) if reference is not None else {}
        bounds: list[tuple[float, tuple[float, float] | None, str, str, str]] = []   # drawn once the axis is set
        for row in rows:
            rule = row.rule
            if ref or not rule.referenced:
                rule.plot(ax, ref, VERDICT_COLOR.get(row.verdict, "#6e7781"), shown, bounds)
            for f in row.failures:
                if f.get("step") is None:
                    continue
                v = f.get("value")
                if v is not None and math.isfinite(v):
                    ax.plot([f["step"]], [v], "x", color=VERDICT_COLOR[FAIL], ms=9, mew=2, zorder=4)
                else:
                    # NaN, inf or missing: a shaded column, labelled on the lower edge of the axes
                    ax.axvspan(f["step"] - 0.3, f["step"] + 0.3, color=VERDICT_COLOR[FAIL], alpha=0.12, lw=0)
                    ax.annotate(f.get("problem") or "?", (f["step"], 0), xycoords=("data", "axes fraction"),
                                color=VERDICT_COLOR[FAIL], ha="center", va="bottom", fontsize=8, weight="bold")
        _draw_bounds(ax, bounds, shown)
        if steps:
            ax.set_xlim(steps.first() - 0.5, steps.last() + 0.5)
        verdicts = ", ".join(f"{r.rule.name}: {r.verdict}" for r in rows)
        ax.set_title(f"{metric}\n{verdicts}", fontsize=9)
        ax.set_xlabel("training step")
        ax.set_ylabel(axis_label(metric), fontsize=8)
        if run_label:   # which run, on the picture itself: a PNG travels without its page
            fig.text(0.99, 0.01, run_label, ha="right", va="bottom", fontsize=6, color="#57606a")
        ax.grid(alpha=0.3)
        if not finite:
            ax.text(0.5, 0.5, "no finite values", transform=ax.transAxes, ha="center", color=VERDICT_COLOR[FAIL])
        handles, labels = ax.get_legend_handles_labels()
        if handles:
            ax.legend(fontsize=7, loc="best")
        fig.tight_layout()
        # through write_bytes_atomic: a fresh temp name and a rename, so no planted link is written through
        png = io.BytesIO()
        fig.savefig(png, format="png")
        write_bytes_atomic(path, png.getvalue())
    finally:
        plt.close(fig)
    return path


def _draw_bounds(ax, bounds: list, shown: list[float]) -> None:
    """The y axis from the data (the run's values and the reference's bands); a bound inside it is a
    line, one off it an arrow and its value at the edge, so that a bound far from the data (x < 100
    over values near 1) does not flatten them to a line on the floor."""
    finite = [v for v in shown if math.isfinite(v)]
    if finite:
        lo, hi = min(finite), max(finite)
        if lo == hi:   # a flat series has no scale of its own: its bounds give it one (0 against |x| < 1e-9)
            near = [y for y, *_ in bounds if math.isfinite(y)]
            lo, hi = min([lo, *near]), max([hi, *near])
        pad = (hi - lo) * 0.08 or max(abs(hi) * 0.1, 0.05)
        ax.set_ylim(lo - pad, hi + pad)
    bottom, top = ax.get_ylim()
    labelled, edges = set(), {"above": 0, "below": 0}
    for y, span, color, style, label in bounds:
        if not finite or bottom <= y <= top:
            name = None if label in labelled else label
            labelled.add(label)
            if span:
                ax.hlines(y, *span, colors=color, linestyles=style, lw=1.5, label=name)
            else:
                ax.axhline(y, color=color, ls=style, lw=1.2, label=name)
            continue
        side = "above" if y > top else "below"
        n = edges[side]
        edges[side] += 1
        ax.annotate(f"{'↑' if side == 'above' else '↓'} {label} (at {y:g}, off scale)",
                    (0.01, 1.0 if side == "above" else 0.0), xycoords="axes fraction",
                    xytext=(0, -4 - 10 * n if side == "above" else 4 + 10 * n), textcoords="offset points",
                    va="top" if side == "above" else "bottom", fontsize=7, color=color)


def duration(started: Any, ended: Any) -> str:
    """m:ss or h:mm:ss between two ISO times of a record; '-' where either is missing or unreadable."""
    import datetime as dt

    try:
        secs = int((dt.datetime.fromisoformat(str(ended)) - dt.datetime.fromisoformat(str(started))).total_seconds())
    except (TypeError, ValueError, OverflowError):
        return "-"
    if secs < 0:
        return "-"
    h, rest = divmod(secs, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


def package_rows(run: dict[str, Any] | None) -> list[tuple[str, str]]:
    """(package, version) of run.json's `packages` ({"interpreter", "versions": {name: version}}; older
    records: {name: version}); only string names and versions, a missing one as "not installed"."""
    packages = run.get("packages") if run else None
    if not isinstance(packages, dict):
        return []
    versions = packages.get("versions") if "versions" in packages else packages
    if not isinstance(versions, dict):
        return []
    return [(k, v if isinstance(v, str) else "not installed") for k, v in sorted(versions.items())
            if isinstance(k, str) and (v is None or isinstance(v, str))]


def provenance_rows(run: dict[str, Any] | None, path: str) -> list[tuple[str, str]]:
    """(label, value) rows of what the run's record says produced it; only what run.json holds."""
    if run is None:
        return [("run", f"{path} (no run.json: provenance unknown)")]
    bundle = run.get("bundle") if isinstance(run.get("bundle"), dict) else {}
    host = run.get("host") if isinstance(run.get("host"), dict) else {}
    build = run.get("image_build") if isinstance(run.get("image_build"), dict) else {}
    commit = bundle.get("commit")
    rows = [
        ("run", str(run.get("run_id") or path)),
        ("recipe / cell", f"{run.get('recipe', '?')} / {run.get('cell', '?')} ({run.get('backend', '?')} backend)"),
        ("status", f"{run.get('status', '?')} (exit {run.get('exit_code', '?')})"),
        ("time (UTC)", f"{run.get('started_at') or '?'} to {run.get('ended_at') or '?'}"),
        ("duration", duration(run.get("started_at"), run.get("ended_at"))),
        ("image", str(run.get("image") or "none recorded")),
        ("bundle commit", f"{commit}{' (dirty: uncommitted changes)' if bundle.get('dirty') else ''}"
         if commit else "not recorded"),
        ("seeds", ", ".join(f"{k}={v}" for k, v in (run.get("seeds") or {}).items()) or "not recorded"),
    ]
    if build:
        rows.insert(5, ("image build", ", ".join(f"{k}={v}" for k, v in build.items())))
    if host:
        gpus = host.get("gpus") or []
        rows.append(("host", f"{host.get('hostname', '?')}: {f'{len(gpus)} x {gpus[0]}' if gpus else 'no GPU'}"
                     f"{', driver ' + str(host['driver']) if host.get('driver') else ''}"))
    packages = run.get("packages")
    if isinstance(packages, dict) and isinstance(packages.get("interpreter"), str):
        rows.append(("packages of", packages["interpreter"]))
    if isinstance(packages, dict) and isinstance(packages.get("error"), str):
        rows.append(("packages", f"not recorded: {packages['error']}"))
    return rows


def write_report(expected: Expected, series: Series, result: GateResult, out: Path, title: str = "",
                 run: dict[str, Any] | None = None) -> Path:
    """Write out/<metric>.png for each gated metric and out/index.html; returns the index path.

    `run` is the run's run.json (None for a bare events directory): its id goes on every plot and
    its provenance at the top of the page.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    reference = load_reference(expected.path)
    run_label = f"run {run.get('run_id')}" if run and run.get("run_id") else title
    images = []
    for metric in expected.metrics():
        images.append((metric, plot_metric(metric, expected, series, result, reference, out / png_name(metric),
                                           run_label=run_label)))
    e = html.escape
    rows = "\n".join(
        f"<tr><td>{e(r.rule.name)}</td><td><code>{e(r.rule.metric)}</code></td><td>{e(r.observed)}</td>"
        f"<td>{e(r.rule.bound_text())}</td>"
        f"<td style=\"color:{VERDICT_COLOR.get(r.verdict, '#000')};font-weight:bold\">{e(r.verdict_text())}</td>"
        f"<td>{e(r.why_text())}</td></tr>" for r in result.rows)
    figs = "\n".join(f"<figure><img src=\"{e(p.name)}\" alt=\"{e(m)}\"><figcaption>{e(m)}</figcaption></figure>"
                     for m, p in images)
    prov = "\n".join(f"<tr><th>{e(k)}</th><td><code>{e(v)}</code></td></tr>" for k, v in provenance_rows(run, title))
    packages = "\n".join(f"<tr><td><code>{e(k)}</code></td><td><code>{e(v)}</code></td></tr>"
                         for k, v in package_rows(run))
    if packages:
        packages = (f"<h2>Packages (from run.json)</h2>\n<table class=\"packages\"><tr><th>package</th>"
                    f"<th>version</th></tr>\n{packages}\n</table>")
    verdict = "PASSED" if result.passed else "FAILED"
    color = VERDICT_COLOR[PASS] if result.passed else VERDICT_COLOR[FAIL]
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>gate {verdict}: {e(title)}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #d0d7de;padding:4px 8px;font-size:13px;text-align:left}}
table.prov th{{background:#f6f8fa;white-space:nowrap}}table.prov code{{word-break:break-all}}
figure{{display:inline-block;margin:8px}}img{{max-width:820px}}</style></head>
<body><h1 style="color:{color}">Expected-metrics gate {verdict}</h1>
<h2>Provenance (from run.json)</h2>
<table class="prov">
{prov}
</table>
{packages}
<p>{e(title)}<br>rules: <code>{e(str(expected.path))}</code>; metrics from {e(series.source)}</p>
<table><tr><th>rule</th><th>metric</th><th>observed</th><th>bound</th><th>verdict</th><th>why</th></tr>
{rows}
</table>
{figs}
</body></html>
"""
    index = out / "index.html"
    write_text_atomic(index, page)
    return index
