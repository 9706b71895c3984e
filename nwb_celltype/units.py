"""Plain-numpy containers that carry units between layers: the reading layer produces
:class:`UnitsBatch`, the feature layer consumes it. No I/O and no heavy imports here."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import InvalidUnitsError
from .reasons import reason_parts as reason_parts  # the reasons' vocabulary (re-exported: public here before)


@dataclass(frozen=True)
class SkippedUnit:
    """A unit that cannot be used, and why (e.g. ``"no spikes"``, ``"no waveform"``; the reasons'
    vocabulary: :mod:`nwb_celltype.reasons`)."""

    unit_id: int
    reason: str


@dataclass
class UnitsBatch:
    """A batch of units as plain numpy arrays.

    Attributes
    ----------
    unit_ids : (n,) int64
        Ids of the units (the Units table's ``id`` column).
    unit_indices : (n,) int64
        Row indices of the units in the source's Units table (for DynamicTableRegions).
    spike_times_s : (total_spikes,) float64
        Spike times of all units, concatenated, in seconds.
    spike_offsets : (n + 1,) int64
        Unit ``i``'s spikes are ``spike_times_s[spike_offsets[i]:spike_offsets[i + 1]]``.
    waveforms : (n, samples) float32 or None
        Peak-channel mean waveform per unit (NaN rows where a unit has none), in the file's units.
    waveform_rate_hz : float or None
        Sampling rate of ``waveforms`` in Hz.
    layers : (n,) object (str)
        Layer per unit in the C4 vocabulary (``vocabulary.LAYERS``), ``"unknown"`` where not known.
    peak_channels : (n,) int64
        Peak channel index (into the unit's waveform channels) per unit, -1 where unknown.
    obs_intervals : list of (k, 2) float64 arrays or None
        Observation intervals per unit in seconds, where the file has them.
    """

    unit_ids: np.ndarray
    unit_indices: np.ndarray
    spike_times_s: np.ndarray
    spike_offsets: np.ndarray
    waveforms: np.ndarray | None = None
    waveform_rate_hz: float | None = None
    layers: np.ndarray | None = None
    peak_channels: np.ndarray | None = None
    obs_intervals: list[np.ndarray] | None = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.unit_ids)
        if self.spike_offsets.shape != (n + 1,):
            raise InvalidUnitsError(
                f"spike_offsets must have shape ({n + 1},) for {n} units, got "
                f"{self.spike_offsets.shape}; build offsets as np.r_[0, np.cumsum(counts)]."
            )
        if self.waveforms is not None and len(self.waveforms) != n:
            raise InvalidUnitsError(
                f"waveforms has {len(self.waveforms)} rows for {n} units; give one row per unit."
            )
        if self.layers is None:
            self.layers = np.full(n, "unknown", dtype=object)

    def __len__(self) -> int:
        return len(self.unit_ids)

    def spike_times(self, i: int) -> np.ndarray:
        """Spike times (s) of the ``i``-th unit of the batch."""
        return self.spike_times_s[self.spike_offsets[i] : self.spike_offsets[i + 1]]

    @property
    def spike_counts(self) -> np.ndarray:
        """(n,) int64 spike count per unit."""
        return np.diff(self.spike_offsets)
