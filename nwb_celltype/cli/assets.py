"""``nwb-celltype assets``: list a dandiset's NWB assets with their sizes."""

from __future__ import annotations

import click

from ._common import print_json


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"  # pragma: no cover


@click.command(short_help="List the NWB assets of a dandiset (or a folder of it).")
@click.argument("dandiset")
@click.option(
    "--version",
    "version",
    default=None,
    help="Dandiset version: 'draft' or a published version (default: the version in DANDISET, "
    "else the most recent published one, else draft).",
)
@click.option(
    "--include",
    multiple=True,
    help="Glob pattern over asset paths, e.g. 'sub-1/*' (repeatable: NWB files matching any are listed; "
    "default: every NWB file).",
)
@click.option(
    "--api-url",
    "--dandi-api-url",
    "api_url",
    envvar="NWB_CELLTYPE_DANDI_API_URL",
    default=None,
    help="DANDI API base URL (env NWB_CELLTYPE_DANDI_API_URL; default: the DANDI archive).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the assets as JSON (for scripts).")
def assets(dandiset, version, include, api_url, as_json):
    """List the NWB assets (.nwb files, in any case) of DANDISET (e.g. 000409, DANDI:000409/draft, a
    dandiarchive.org URL, or 000409/sub-1/ for one folder) with their sizes. DANDISET always names
    a dandiset of the archive, even where a local folder of that name exists."""
    from ..io import dandiset_listing

    listing = dandiset_listing(dandiset, version, dandi_api_url=api_url, include=list(include) or None)
    found = listing.assets
    if as_json:
        print_json([a.to_dict() for a in found])
        return
    if not found:
        click.echo(f"no matching NWB assets in dandiset {listing.dandiset_id}@{listing.version}")
        return
    width = max(len(a.path) for a in found)
    for a in found:
        click.echo(f"{a.path:<{width}}  {_human(a.size):>9}  {a.asset_id}")
    total = sum(a.size for a in found)
    click.echo(
        f"{len(found)} NWB assets, {_human(total)} in dandiset {found[0].dandiset_id}@{found[0].version}"
    )
