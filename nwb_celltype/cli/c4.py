"""``nwb-celltype c4``: import the ensembles published by the C4 authors into model bundles, and show
where to get them."""

from __future__ import annotations

import click

from ._common import print_json

_VARIANTS = ["base", "mli_clustering", "layer_information", "layer_information_mli_clustering"]


@click.group()
def c4() -> None:
    """The published C4 models (Beau et al., Cell 2025): fetch and import them."""


@c4.command("import")
@click.argument("archive", type=click.Path(exists=True, dir_okay=False))
@click.argument("hessians", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--variant",
    type=click.Choice(_VARIANTS),
    required=True,
    help="Which published ensemble ARCHIVE/HESSIANS are (decides layer use and class names).",
)
@click.option(
    "--out",
    "out",
    type=click.Path(file_okay=False),
    required=True,
    help="Directory to write the model bundle to (weights.safetensors + model_card.json): new, empty, "
    "or holding an earlier bundle only.",
)
@click.option(
    "--classes",
    default=None,
    help="Comma-separated class names in output order, overriding the variant's: one per model output, "
    "unique, not 'unclassified' or 'not_classifiable' (checked before the archive is read).",
)
@click.option(
    "--overwrite",
    is_flag=True,
    help="Replace an existing bundle at --out (swapped for the new one once complete).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON (for scripts).")
def import_(archive, hessians, variant, out, classes, overwrite, as_json):
    """Turn C4's ARCHIVE (trained_models.tar.gz) and HESSIANS (hessians.pt) into a model bundle.

    Nothing is unpickled beyond tensors and plain containers (torch weights_only loading); files that
    would need more are refused. The prior precision of the Laplace calibration is fitted here, once.
    """
    from ..model.bundle import check_bundle_folder, save_bundle
    from ..model.c4 import import_c4_ensemble

    check_bundle_folder(out, overwrite=overwrite)  # before reading the archive
    names = [c.strip() for c in classes.split(",")] if classes else None
    bundle = import_c4_ensemble(archive, hessians, variant=variant, classes=names)
    path = save_bundle(bundle, out, overwrite=overwrite)
    summary = {
        "bundle": str(path),
        "name": bundle.name,
        "version": bundle.version,
        "sha256": bundle.sha256,
        "members": bundle.n_members,
        "classes": list(bundle.classes),
        "uses_layer": bundle.uses_layer,
        "sources": bundle.card["c4"]["sources"],
    }
    if as_json:
        print_json(summary)
    else:
        click.echo(
            f"imported C4 {variant}: {bundle.n_members} members, classes {', '.join(bundle.classes)} -> {path}\n"
            f"bundle sha256 {bundle.sha256}\n"
            f"use it with: nwb-celltype annotate SOURCE --model {path}"
        )


@c4.command("fetch")
@click.option(
    "--variant",
    type=click.Choice(_VARIANTS),
    default="base",
    show_default=True,
    help="Which published C4 ensemble to fetch.",
)
@click.option(
    "--dest",
    type=click.Path(file_okay=False),
    default=None,
    help="Download both files into this directory (default: only print the URLs).",
)
def fetch(variant, dest):
    """Print (or, with --dest, download) the C4 authors' figshare URLs of a variant's two files.

    The download is a plain HTTPS GET of each URL; a file is kept only once all of it has arrived.
    """
    from ..model.c4 import C4_HESSIANS_URLS, C4_MODELS_URLS

    urls = {"trained_models.tar.gz": C4_MODELS_URLS[variant], "hessians.pt": C4_HESSIANS_URLS[variant]}
    if dest is None:
        for name, url in urls.items():
            click.echo(f"{name}\t{url}")
        click.echo(
            f"then: nwb-celltype c4 import trained_models.tar.gz hessians.pt --variant {variant} --out BUNDLE"
        )
        return
    from pathlib import Path

    d = Path(dest)
    d.mkdir(parents=True, exist_ok=True)
    for name, url in urls.items():
        target = d / name
        click.echo(f"downloading {url} -> {target}", err=True)
        _download(url, target, name)
    click.echo(
        f"nwb-celltype c4 import {d / 'trained_models.tar.gz'} {d / 'hessians.pt'} --variant {variant} --out BUNDLE"
    )


def _download(url: str, target, name: str) -> None:
    """GET ``url`` into ``target``: into a temporary file beside it, renamed onto it only when the
    whole body (its Content-Length) has arrived; RemoteError otherwise, with nothing left behind."""
    import os
    import shutil
    import urllib.request

    from .._atomic import temp_path
    from ..errors import RemoteError

    part = temp_path(target, "part")
    how = "check the connection, or download it in a browser and run `nwb-celltype c4 import` on the files."
    try:
        with urllib.request.urlopen(url, timeout=60) as resp, open(part, "wb") as f:
            shutil.copyfileobj(resp, f)
            expected, got = resp.headers.get("Content-Length"), f.tell()
        if expected is not None and got != int(expected):
            raise RemoteError(
                f"could not download {name} from {url}: the connection closed after {got} of {expected} bytes; {how}"
            )
        os.replace(part, target)
    except OSError as exc:
        raise RemoteError(f"could not download {name} from {url}: {exc}; {how}") from exc
    finally:
        part.unlink(missing_ok=True)
