"""The neurons of feature-table folders, fingerprinted by their content, to find folders of a
library that list the same neurons (re-exported, relabelled, or copied with a few cells changed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _row_digest(*parts) -> str:
    import hashlib

    h = hashlib.sha1()
    for a in parts:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def table_neurons(fs) -> tuple[str, dict[str, list[tuple[str, str]]]]:
    """(dataset, {neuron_id: fingerprints}) of a table folder's feature set: the dataset is its
    dataset.json ``lab`` (else ``name``), the neuron ids those of its ``units.csv``, and a row's
    fingerprints digests of its content as the features read it: ``("discharge", ...)`` of its ACG
    and ISI counts where it has them, ``("waveform", ...)`` of its aligned waveform where it has one.

    Two folders hold the same neuron when they give the same dataset and neuron id *and* a
    fingerprint in common (the same ACG and ISI counts, or the same waveform): a folder re-exported
    or relabelled, or a copy with a few cells changed. Folders of one lab that reuse ids for other
    neurons (one folder per session numbering its units 1, 2, ..., or a sorter's cluster ids) hold
    different data and are not the same neurons. Ids made up from the row position (a folder without
    ``neuron_id``s) and folders naming neither lab nor name identify no neuron: ``{}``; rows with
    neither discharge nor waveform have no fingerprint and are left out."""
    meta = getattr(fs, "meta", None) or {}
    dataset = str(meta.get("lab") or meta.get("name") or "")
    ids = [str(x) for x in meta.get("neuron_ids", [])]
    folder = Path(str(meta.get("folder", ""))).name
    if not dataset or ids == [f"{folder}_{i}" for i in range(len(ids))]:
        return dataset, {}
    out: dict[str, list[tuple[str, str]]] = {}
    for i, n in enumerate(ids):
        prints = []
        if fs.has_discharge[i]:
            prints.append(("discharge", _row_digest(fs.acg_counts[i], fs.isi_counts[i])))
        if fs.has_waveform[i]:
            prints.append(("waveform", _row_digest(fs.waveform[i])))
        if prints:
            out[n] = prints
    return dataset, out


def repeated_neurons(
    dataset: str, neurons: dict[str, list[tuple[str, str]]], seen: dict, where: str
) -> tuple[str, list[str]]:
    """The neurons of a table folder (:func:`table_neurons`) already listed by an earlier folder:
    (that folder, their ids); ``("", [])`` when none. ``seen`` maps (dataset, neuron id, fingerprint)
    to the folder that listed it first, and is updated."""
    first, repeated = "", []
    for n, prints in neurons.items():
        prev = [seen.setdefault((dataset, n, p), where) for p in prints]
        other = next((f for f in prev if f != where), None)
        if other is not None:
            first = first or other
            repeated.append(n)
    return first, repeated


def describe_repeated(dataset: str, first: str, ids: list[str]) -> str:
    """One sentence naming neurons that two table folders both list."""
    shown = ", ".join(ids[:3]) + (f", ... ({len(ids)} in all)" if len(ids) > 3 else "")
    return (
        f"{len(ids)} neuron(s) of {dataset!r} ({shown}) are also in {first}, with the same neuron_id and "
        "the same ACG/ISI counts or waveform: the same neurons listed twice count twice and can sit on "
        "both sides of the cross-validation"
    )
