"""`recipe doctor`: check this container against the image lock and print the table."""

from __future__ import annotations

import json

import click

from runner.errors import EXIT_OK, EXIT_PREFLIGHT, EXIT_REFUSED


@click.command("doctor")
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def doctor_cmd(name: str | None, as_json: bool) -> int:
    """Compare commits, package versions and kernels in this container with the image lock.

    With NAME, also run miles' own argument parser on that recipe's default launch (the `args` rows).

    Exit 0: everything matches; 3: not inside the pinned GPU image (this machine cannot run it);
    6: a mismatch or a missing part inside it (refused: the image is not the one the lock pins).
    """
    from runner.doctor import run_doctor
    from runner.recipe import load_recipe

    # With NAME, miles' own parser also judges that recipe's launch (the `args` row).
    report = run_doctor(load_recipe(name) if name else None, with_args=bool(name))
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
    else:
        click.echo(report.table())
    if report.ok:
        return EXIT_OK
    return EXIT_PREFLIGHT if not report.in_image else EXIT_REFUSED
