"""``nwb-celltype simulate``: write a simulated, partly labelled cerebellar recording (or library)."""

from __future__ import annotations

import click

from ._common import print_json


@click.command()
@click.argument("out", type=click.Path(dir_okay=True))
@click.option(
    "--preset",
    type=click.Choice(["mouse", "macaque"]),
    default="mouse",
    show_default=True,
    help="Species preset (firing rates, spike widths).",
)
@click.option("--units", "n_units", type=int, default=150, show_default=True, help="Number of units.")
@click.option(
    "--duration",
    "duration_s",
    type=float,
    default=600.0,
    show_default=True,
    help="Session length in seconds.",
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Random seed (same seed and OUT name, same file bytes).",
)
@click.option(
    "--labelled-fraction",
    type=float,
    default=0.3,
    show_default=True,
    help="Fraction of the units of each C4 class given a ground-truth label (never a unit with "
    "fewer than 100 spikes, which a library may not label).",
)
@click.option(
    "--waveform-rate",
    "waveform_rate_hz",
    type=float,
    default=None,
    help="Waveform sampling rate in Hz (default 30000; a --library cycles 30000/25000/40000 "
    "unless this is given, then every session uses it).",
)
@click.option(
    "--no-defects", is_flag=True, help="Simulate clean units (no refractory violations, drift, ...)."
)
@click.option("--no-compression", is_flag=True, help="Write uncompressed datasets (faster, larger).")
@click.option(
    "--library",
    is_flag=True,
    help="Write a whole C4-shaped library (69/58/27/18/30 labelled + 3090 unlabelled units over "
    "--sessions files) into the folder OUT; --units/--labelled-fraction are then ignored.",
)
@click.option("--sessions", type=int, default=12, show_default=True, help="Session files of a --library.")
@click.option(
    "--overwrite",
    is_flag=True,
    help="Replace OUT if it exists (a --library folder as a whole, once the new one is complete).",
)
@click.option("--json", "as_json", is_flag=True, help="Print a summary as JSON.")
def simulate(
    out,
    preset,
    n_units,
    duration_s,
    seed,
    labelled_fraction,
    waveform_rate_hz,
    no_defects,
    no_compression,
    library,
    sessions,
    overwrite,
    as_json,
):
    """Simulate a cerebellar Neuropixels recording (spike trains + mean waveforms of PkC_ss, PkC_cs,
    MLI, GoC, MFB and unidentified units, with ground-truth labels for a fraction of them) and write
    it to the NWB file OUT. Simulated data: for trying the pipeline, not for biology.

    With --library, OUT is a new or empty folder (or, with --overwrite, an older library); it is
    written in a hidden folder beside it and renamed into place when complete, so an interrupted
    or failed run leaves OUT as it was."""
    from pathlib import Path

    import numpy as np

    from ..errors import OutputError
    from ..simulate import simulate_library, simulate_recording

    if not library and Path(out).exists() and not overwrite:
        raise OutputError(f"{out} exists; pass --overwrite to replace it, or choose another OUT")
    compression = None if no_compression else "gzip"
    if library:
        results = simulate_library(
            out,
            preset=preset,
            n_sessions=sessions,
            duration_s=duration_s,
            seed=seed,
            waveform_rates_hz=None if waveform_rate_hz is None else (waveform_rate_hz,),
            defects=not no_defects,
            compression=compression,
            overwrite=overwrite,
        )
    else:
        results = [
            simulate_recording(
                out,
                preset=preset,
                n_units=n_units,
                duration_s=duration_s,
                seed=seed,
                labelled_fraction=labelled_fraction,
                defects=not no_defects,
                waveform_rate_hz=waveform_rate_hz,
                compression=compression,
                keep_spikes=False,
            )
        ]
    summary = []
    for r in results:
        classes, counts = np.unique(r.classes, return_counts=True)
        lab = r.labels[r.labelled]
        summary.append(
            {
                "path": str(r.path),
                "units": len(r),
                "spikes": int(r.spike_counts.sum()),
                "labelled": int(r.labelled.sum()),
                "classes": dict(zip(classes.tolist(), counts.tolist(), strict=True)),
                "labelled_classes": {c: int((lab == c).sum()) for c in sorted(set(lab.tolist()))},
                "waveform_rate_hz": r.waveform_rate_hz,
                "ground_truth_table": r.annotations_written,
            }
        )
    if as_json:
        print_json(summary if library else summary[0])
        return
    for s in summary:
        click.echo(
            f"wrote {s['path']}: {s['units']} units, {s['spikes']} spikes, {s['labelled']} labelled "
            f"({', '.join(f'{k} {v}' for k, v in s['labelled_classes'].items())}); "
            f"waveforms at {s['waveform_rate_hz']:g} Hz"
        )
