"""Simulated cerebellar Neuropixels recordings with ground truth: spike trains and mean waveforms
of the five C4 classes plus unidentified units, written as NWB files (also whole libraries).
The C4 classes are drawn from per-unit fits to real identified units (``fitted_params.json``, made
by ``python -m nwb_celltype.simulate._fit``); parameters and sources are in docs/simulation.md."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from ..errors import SourceNotFoundError
from ._nwb import site_layers, write_nwb
from ._params import (
    C4_LABELLED_COUNTS,
    C4_UNLABELLED_COUNT,
    LABEL_MIN_SPIKES,
    OTHER,
    PRESETS,
    SIM_CLASSES,
    get_preset,
)
from ._recording import (
    LIBRARY_FILES,
    class_spike_train,
    class_waveform,
    simulate_library,
    simulate_recording,
    simulate_units,
)
from ._result import DEFECT_RATES, SimulationResult
from ._spikes import (
    add_refractory_violations,
    apply_amplitude_cutoff,
    apply_cs_pause,
    burst_train,
    gamma_train,
    log_rate_process,
    mixture_train,
)
from ._waveforms import make_layer_profile, neuropixels_geometry, render_waveforms, template_phases

#: File name of the shipped demo recording inside ``nwb_celltype/data``.
DEMO_RECORDING = "demo_mouse.nwb"
#: Arguments that made the shipped demo recording (:func:`write_demo_recording` remakes it).
DEMO_ARGS: dict = {
    "preset": "mouse",
    "duration_s": 300.0,
    "seed": 2025,
    "class_counts": {"PkC_ss": 12, "PkC_cs": 10, "MLI": 12, "GoC": 10, "MFB": 12, "other": 24},
    "labelled_counts": {"PkC_ss": 10, "PkC_cs": 10, "MLI": 10, "GoC": 10, "MFB": 10},
}


def demo_recording_path() -> Path:
    """Installed path of the small labelled demo recording shipped in ``nwb_celltype/data``.

    Made by ``simulate_recording(path, **DEMO_ARGS)``; see ``nwb_celltype/data/README.md``.
    """
    path = Path(str(resources.files("nwb_celltype") / "data" / DEMO_RECORDING))
    if not path.exists():
        raise SourceNotFoundError(
            f"the demo recording {path} is missing from the installation; reinstall nwb-celltype or "
            f"regenerate it with nwb_celltype.simulate.write_demo_recording()."
        )
    return path


def write_demo_recording(path: str | Path | None = None) -> SimulationResult:
    """(Re)generate the shipped demo recording (default: its place in the package)."""
    if path is None:
        path = Path(str(resources.files("nwb_celltype") / "data" / DEMO_RECORDING))
    return simulate_recording(path, **DEMO_ARGS)


__all__ = [
    "C4_LABELLED_COUNTS",
    "C4_UNLABELLED_COUNT",
    "DEFECT_RATES",
    "DEMO_ARGS",
    "DEMO_RECORDING",
    "LABEL_MIN_SPIKES",
    "LIBRARY_FILES",
    "OTHER",
    "PRESETS",
    "SIM_CLASSES",
    "SimulationResult",
    "add_refractory_violations",
    "apply_amplitude_cutoff",
    "apply_cs_pause",
    "burst_train",
    "class_spike_train",
    "class_waveform",
    "demo_recording_path",
    "gamma_train",
    "get_preset",
    "log_rate_process",
    "make_layer_profile",
    "mixture_train",
    "neuropixels_geometry",
    "render_waveforms",
    "simulate_library",
    "simulate_recording",
    "simulate_units",
    "site_layers",
    "template_phases",
    "write_demo_recording",
    "write_nwb",
]
