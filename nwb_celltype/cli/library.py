"""``nwb-celltype library``: build, check, summarise, merge and share ground-truth libraries."""

from __future__ import annotations

from pathlib import Path

import click

from ._common import in_place_options, overwrite_option, refuse_existing, units_table_option


@click.group("library")
def library() -> None:
    """Ground-truth libraries: label NWB files, list them in a manifest, validate, summarise,
    merge, export as a dandiset, and import the C4 library's HDF5 format."""


@library.command("label")
@click.argument("source", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--labels",
    "labels",
    type=click.Path(exists=True, dir_okay=False),
    help="CSV/TSV keyed by unit id (or phy cluster_id, unit_name). Delimiter by suffix: .csv comma, "
    ".tsv/.tab tab, other suffixes detected.",
)
@click.option("--column", help="Take labels from this existing Units column instead (e.g. cell_type).")
@click.option(
    "--unit-column",
    help="Column of the --labels table holding unit ids (default: unit_id, id, cluster_id, unit or "
    "unit_name).",
)
@click.option(
    "--id-column",
    help="Units column that the --labels table's ids refer to, e.g. cluster_id or unit_name ('id': the NWB "
    "unit ids). Default: a cluster_id (or unit_name) key column is matched through the Units column of that "
    "name, and is an error when the file has none; unit_id / id keys are the NWB ids.",
)
@units_table_option("label", "; the labels refer to its rows")
@click.option(
    "--label-column",
    help="Column of the --labels table holding labels (default: label, cell_type, celltype, class or group).",
)
@click.option(
    "--map",
    "mapping",
    multiple=True,
    help="FILE_LABEL=OUR_LABEL (repeatable or comma-separated), e.g. PC=PkC_ss.",
)
@click.option(
    "--evidence-type", help="Evidence for rows that do not give one (optotagging, pharmacology, ...)."
)
@click.option(
    "--evidence", "evidence_text", default="", help="Free-text evidence for rows that do not give one."
)
@click.option("--labelled-by", help="Who labelled (for rows that do not say).")
@click.option("--labelled-at", help="When: ISO 8601 date or date-time, e.g. 2024-05-01 (default now, UTC).")
@click.option(
    "--name",
    default=None,
    help="Name of the new annotation table (default: the --kind, e.g. ground_truth, or ground_truth_2, "
    "... when the file has one).",
)
@click.option(
    "--kind",
    type=click.Choice(["ground_truth", "expert"]),
    default="ground_truth",
    show_default=True,
    help="ground_truth: identified units (optotagging, pharmacology, ...); expert: expert opinion, which "
    "show, report and annotate compare predictions with but libraries (stats, validate, train) do not "
    "read: to train on expert labels use --kind ground_truth --evidence-type expert.",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    help="Labelled copy (default <stem>.labelled.nwb); its folder must exist.",
)
@in_place_options("SOURCE")
@click.option("--overwrite", is_flag=True, help="Replace an existing --out file.")
def label_cmd(
    source,
    labels,
    column,
    unit_column,
    id_column,
    units_table,
    label_column,
    mapping,
    evidence_type,
    evidence_text,
    labelled_by,
    labelled_at,
    name,
    kind,
    out,
    in_place,
    overwrite,
    allow_read_only,
    allow_hard_links,
):
    """Write ground-truth labels into the NWB file SOURCE (a labelled copy, or SOURCE itself with
    --in-place). Every row needs an evidence type and a labeller: columns of the table, or
    --evidence-type and --labelled-by for all rows. Labels that a table of SOURCE already holds
    (same units, labels, evidence types and labellers) are refused: nothing is written."""
    from ..library import label_file

    before = _table_names(source) if name is None else set()
    path = label_file(
        source,
        labels,
        column=column,
        mapping=list(mapping),
        out=out,
        in_place=in_place,
        name=name,
        overwrite=overwrite,
        evidence_type=evidence_type,
        evidence_text=evidence_text,
        labelled_by=labelled_by,
        labelled_at=labelled_at,
        kind=kind,
        unit_column=unit_column,
        label_column=label_column,
        id_column=id_column,
        units_table=units_table,
        allow_read_only=allow_read_only,
        allow_hard_links=allow_hard_links,
    )
    if name is None:  # the free name chosen under the file's lock: the table that is new there
        new = sorted(_table_names(path) - before)
        name = ", ".join([n for n in new if not n.endswith("_evidence")] or new) or "?"
    click.echo(f"labels written to {path} (table {name!r})")


def _table_names(path) -> set[str]:
    from .._files import open_nwb_h5

    with open_nwb_h5(path) as f:
        return {n for m in (f.get("processing") or {}).values() for n in m.keys()}


@library.command("create")
@click.argument("manifest", type=click.Path(dir_okay=False))
@click.argument("files", nargs=-1, required=True)
@click.option("--name", help="Library name (default: the manifest's file name).")
@click.option("--description", default="", help="Free text describing the library.")
@click.option("--annotation", help="Ground-truth table to use in every file (default: all).")
@overwrite_option("MANIFEST")
def create_cmd(manifest, files, name, description, annotation, overwrite):
    """Write MANIFEST (.toml/.json/.yaml) listing FILES (NWB paths or dandi:// asset URLs) with hashes."""
    from ..library import create_manifest

    refuse_existing(manifest, overwrite)
    m = create_manifest(
        files,
        name=name or Path(manifest).stem,
        description=description,
        annotation=annotation,
        root=Path(manifest).parent,
    )
    m.save(manifest)
    click.echo(f"{manifest}: {len(m)} files")


@library.command("validate")
@click.argument("manifest", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--min-spikes", type=int, default=100, show_default=True, help="Labelled units need this many spikes."
)
@click.option(
    "--no-waveforms-needed",
    is_flag=True,
    help="Do not require a waveform_mean (finite, not flat) for labelled units: the acg-isi-wave family "
    "scores a unit without one from its discharge alone; the c4-3d family needs one.",
)
@click.option(
    "--features",
    "check_features",
    is_flag=True,
    help="Also compute features; report unusable labelled units.",
)
@click.option(
    "--family",
    type=click.Choice(["auto", "acg-isi-wave", "c4-3d"]),
    default="auto",
    show_default=True,
    help="Feature family of --features, as for train: acg-isi-wave (the only one feature tables allow) or "
    "c4-3d (NWB files only); auto = acg-isi-wave if the manifest lists feature tables, else c4-3d.",
)
@click.option("--cache-dir", type=click.Path(file_okay=False), help="Feature cache folder (with --features).")
def validate_cmd(manifest, min_spikes, no_waveforms_needed, check_features, family, cache_dir):
    """Check MANIFEST's library; exit status 1 if there are errors."""
    from ..library import validate_library

    config = None
    if family != "auto":
        from ..features.families import get_family

        config = get_family(family).default_config()
    rep = validate_library(
        manifest,
        min_spikes=min_spikes,
        require_waveforms=not no_waveforms_needed,
        check_features=check_features,
        config=config,
        cache_dir=cache_dir,
    )
    click.echo(rep.summary())
    if not rep.ok:
        raise SystemExit(1)


def _refuse_input_as_figure(figure: str, manifest_path: str, manifest) -> None:
    """Refuse a --figure that would replace an input (:func:`~nwb_celltype._output_paths.check_not_input`):
    the manifest or a local file it lists, through a symbolic link or not, or a file a listed table
    folder is read from (labels.csv, acg.csv, ...; a new file beside them is written)."""
    from .._output_paths import check_not_input

    listed = [e.source(manifest.root) for e in manifest.entries if e.local_path is not None]
    check_not_input(figure, [manifest_path, *listed], option="--figure")


@library.command("stats")
@click.argument("manifest", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--figure",
    type=click.Path(dir_okay=False),
    help="Save the figure here (format from the suffix: .png, .pdf, .svg; an existing file only with --overwrite).",
)
@click.option("--json", "as_json", is_flag=True, help="Print counts as JSON instead of tables.")
@overwrite_option("the --figure file")
def stats_cmd(manifest, figure, as_json, overwrite):
    """Labelled units per class, evidence, lab, species and library."""
    from ..library import library_stats, load_manifest
    from ..library.stats import STAT_KEYS, check_figure_path

    manifest_path, manifest = manifest, load_manifest(manifest)
    if figure:  # before anything is read or printed
        check_figure_path(figure)
        _refuse_input_as_figure(figure, manifest_path, manifest)
        refuse_existing(figure, overwrite)
    st = library_stats(manifest)
    if as_json:
        from ._common import print_json

        print_json(
            {
                "library": st.library,
                "n_files": st.n_files,
                "n_units": st.n_units,
                **{k: st.counts(k) for k in STAT_KEYS},
            }
        )
    else:
        click.echo(st.to_table())
    if figure:
        click.echo(f"figure: {st.plot(figure)}", err=as_json)


@library.command("export")
@click.argument("manifest", type=click.Path(exists=True, dir_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False), help="New or empty folder.")
@click.option("--name", help="Dandiset name (default: library name).")
@click.option("--description", help="Dandiset description.")
@click.option("--no-validate", is_flag=True, help="Skip dandi's offline validation.")
def export_cmd(manifest, out, name, description, no_validate):
    """Lay MANIFEST's files out as a DANDI-ready dandiset in OUT (then: dandi upload)."""
    from ..library import export_dandiset

    mapping = export_dandiset(manifest, out, name=name, description=description, validate=not no_validate)
    for src, dest in mapping.items():
        click.echo(f"{src} -> {dest}")
    click.echo(f"dandiset ready in {out}" + ("" if no_validate else " (dandi validate: no errors)"))


@library.command("merge")
@click.argument("manifests", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Merged manifest to write.")
@click.option("--name", help="Name of the merged library (default: --out's file name).")
@overwrite_option("--out")
def merge_cmd(manifests, out, name, overwrite):
    """Merge library MANIFESTS into one; each file keeps the library it came from."""
    from ..library import load_manifest, merge_manifests

    refuse_existing(out, overwrite)
    m = merge_manifests([load_manifest(p) for p in manifests], name=name or Path(out).stem)
    m.save(out)
    click.echo(f"{out}: {len(m)} files from {len(manifests)} libraries")


@library.command("import-c4h5")
@click.argument("h5file", type=click.Path(exists=True, dir_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder for the NWB files.")
@click.option("--species", default="Mus musculus", show_default=True, help="Species of the animals.")
@click.option("--age", help="ISO 8601 age or range of the animals (e.g. P60D/P120D); DANDI needs one.")
@click.option(
    "--labelled-by",
    default="C4 collaboration (Beau et al. 2025)",
    show_default=True,
    help="Who labelled the units.",
)
@click.option("--map", "mapping", multiple=True, help="C4_LABEL=OUR_LABEL (empty to skip), e.g. GrC=.")
@click.option(
    "--skip-unknown-labels", is_flag=True, help="Leave out units whose label is not in our vocabulary."
)
@click.option("--all-spikes", is_flag=True, help="Do not apply C4's sane_spikes / fn_fp quality masks.")
@click.option("--overwrite", is_flag=True, help="Replace NWB files that exist in --out.")
@click.option("--manifest", type=click.Path(dir_okay=False), help="Also write a manifest of the files.")
def import_c4h5_cmd(
    h5file, out, species, age, labelled_by, mapping, skip_unknown_labels, all_spikes, overwrite, manifest
):
    """Convert a C4 library HDF5 file into NWB files with ground-truth annotations."""
    from ..library import create_manifest, import_c4h5, parse_mapping

    files = import_c4h5(
        h5file,
        out,
        species=species,
        age=age,
        labelled_by=labelled_by,
        mapping=parse_mapping(list(mapping)),
        skip_unknown_labels=skip_unknown_labels,
        quality_filter=not all_spikes,
        overwrite=overwrite,
    )
    for f in files:
        click.echo(str(f))
    if manifest:
        create_manifest(files, name=Path(manifest).stem, root=Path(manifest).parent).save(manifest)
        click.echo(f"manifest: {manifest}")


@library.command("import-tables")
@click.argument("folders", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option(
    "--manifest",
    required=True,
    type=click.Path(dir_okay=False),
    help="Library manifest (.toml/.json/.yaml) to create, or to add the folders to.",
)
@click.option("--name", help="Library name of a new manifest (default: the manifest's file name).")
def import_tables_cmd(folders, manifest, name):
    """Check folders of per-unit feature tables (HIPPIE/C4 layout: labels.csv or units.csv, acg.csv,
    isi_dist.csv, waveforms.csv, dataset.json; docs/library.md) and list them in MANIFEST with their
    content hashes. They then join `library stats`, `validate`, `merge` and `train` like NWB files
    (training on tables uses the acg-isi-wave feature family). The data stays where it is."""
    from ..library.tables import import_tables

    m, infos = import_tables(list(folders), manifest, name=name)
    for info in infos:
        parts = ["ACG/ISI" if info.has_acg else "", "waveforms" if info.has_waveforms else ""]
        click.echo(
            f"{info.path}: {info.n_units} units ({info.species}, {info.lab}; "
            f"{' + '.join(p for p in parts if p)}), sha256 {info.sha256[:12]}"
        )
    click.echo(f"{manifest}: {len(m)} entries")
