"""The ground truth of a simulated recording (:class:`SimulationResult`) and the constants that
the simulator and its NWB writer share."""

from __future__ import annotations

import datetime
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InvalidValueError

#: Fixed session start (determinism: same seed -> same file contents).
_START = datetime.datetime(2025, 1, 6, 10, 0, 0, tzinfo=datetime.timezone.utc)
_UUID_NS = uuid.UUID("6f1c1a52-4f7e-4b8e-9a57-1d6c0e3c1b11")
N_CHANNELS = 12

#: How each C4 class is identified in real ground-truth libraries (Beau et al. 2025), mimicked.
_EVIDENCE: dict[str, tuple[str, str]] = {
    "PkC_ss": ("expert", "simple-spike pause after complex spikes of the same Purkinje cell"),
    "PkC_cs": ("expert", "complex spikes followed by a simple-spike pause in a paired unit"),
    "MLI": ("optotagging", "optogenetic identification of a molecular layer interneuron"),
    "GoC": ("optotagging", "optogenetic identification of a Golgi cell"),
    "MFB": ("optotagging", "optogenetic identification of a mossy fibre bouton"),
}

#: Default defect rates (fraction of units affected) when ``defects=True``.
DEFECT_RATES: dict[str, float] = {
    "refractory_violations": 0.10,
    "amplitude_drift": 0.10,
    "stops_firing": 0.06,
    "few_spikes": 0.03,
}


@dataclass
class SimulationResult:
    """Ground truth of one simulated recording (numpy arrays, one row per unit, table order).

    Attributes
    ----------
    path : Path or None
        The NWB file written (None if none was written).
    classes : (n,) str
        True class: one of ``vocabulary.C4_CLASSES`` or ``"other"``.
    subtypes : (n,) str
        Kind within the class (MFB ``"positive"``/``"negative"`` main phase, other ``"granule"``, ...).
    labelled : (n,) bool
        Whether the unit carries a ground-truth label in the file.
    cell_ids : (n,) int64
        Simulated cell of each unit; the PkC_ss and PkC_cs units of one Purkinje cell share it.
    partner : (n,) int64
        Row of the other unit of the same Purkinje cell (PkC_ss <-> PkC_cs), -1 if none.
    rates_hz : (n,) float64
        Target mean rate of the unit's generating process (before defects), Hz.
    layers : (n,) str
        Layer of the peak site in the C4 vocabulary (``"ML"``, ``"PCL"``, ``"GCL"``).
    locations : (n,) str
        CCF-style acronym of the peak site (e.g. ``"SIMmo"``).
    electrodes : (n, channels) int64
        Electrode rows the waveform channels refer to; ``peak_channels`` indexes into them.
    peak_channels : (n,) int64
    waveforms : (n, samples, channels) float32
        Mean waveforms in volts, sampled at ``waveform_rate_hz``.
    spike_times_s, spike_offsets : (total,) float64 and (n + 1,) int64, or None
        Flat spike times (s) and offsets, as in ``UnitsBatch`` (None when not kept).
    spike_counts : (n,) int64
    defects : dict of str -> (n,) bool
        Which units carry each defect (keys of ``DEFECT_RATES``).
    discharge_sources, waveform_sources : (n,) str or None
        The real unit (``neuron_id`` of the real-c4 tables) whose fitted discharge / waveform row
        each unit was drawn from; ``""`` where none (template units), ``"a+b"`` for a merge of two.
    """

    path: Path | None
    preset: str
    seed: int
    duration_s: float
    waveform_rate_hz: float
    classes: np.ndarray
    subtypes: np.ndarray
    labelled: np.ndarray
    cell_ids: np.ndarray
    partner: np.ndarray
    rates_hz: np.ndarray
    layers: np.ndarray
    locations: np.ndarray
    electrodes: np.ndarray
    peak_channels: np.ndarray
    waveforms: np.ndarray
    spike_counts: np.ndarray
    spike_times_s: np.ndarray | None = None
    spike_offsets: np.ndarray | None = None
    defects: dict = field(default_factory=dict)
    annotations_written: bool = False
    discharge_sources: np.ndarray | None = None
    waveform_sources: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.classes)

    @property
    def labels(self) -> np.ndarray:
        """(n,) str: the ground-truth label of labelled units, ``""`` elsewhere."""
        return np.where(self.labelled, self.classes, "")

    def spike_times(self, i: int) -> np.ndarray:
        """Spike times (s) of unit ``i`` (needs the spikes kept)."""
        if self.spike_times_s is None or self.spike_offsets is None:
            raise InvalidValueError(
                "spike times were not kept for this result; simulate with keep_spikes=True "
                "or read them from the NWB file."
            )
        return self.spike_times_s[self.spike_offsets[i] : self.spike_offsets[i + 1]]


# --------------------------------------------------------------------------------------------
# validation
