"""Small, seeded NWB files for library tests and examples: a Units table with Poisson-like spike
trains and mean waveforms, electrodes, and a subject, so that DANDI's organize/validate accept them."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

import numpy as np


def mock_library_file(
    path: str | os.PathLike,
    *,
    n_units: int = 6,
    subject_id: str = "mouse1",
    session_id: str = "session1",
    species: str = "Mus musculus",
    lab: str = "mocklab",
    duration_s: float = 60.0,
    rate_hz: float = 10.0,
    seed: int = 0,
    unit_ids: list[int] | None = None,
    extra_columns: dict[str, list] | None = None,
) -> Path:
    """Write a small NWB file with ``n_units`` units; returns its path.

    Spike times are uniform on ``[0, duration_s)`` at about ``rate_hz`` (so ~600 spikes per unit at
    the defaults), waveforms are (units, 90 samples, 4 channels) at 30 kHz.
    """
    from pynwb import NWBHDF5IO, NWBFile
    from pynwb.file import Subject

    rng = np.random.default_rng(seed)
    nwb = NWBFile(
        session_description="mock recording for library tests",
        identifier=f"mock-{subject_id}-{session_id}-{seed}",
        session_start_time=datetime(2024, 1, 1, tzinfo=timezone.utc),
        session_id=session_id,
        lab=lab,
        institution="nowhere",
        subject=Subject(subject_id=subject_id, species=species, sex="U", age="P90D"),
    )
    device = nwb.create_device(name="probe", description="mock probe")
    group = nwb.create_electrode_group(
        name="shank0", description="mock shank", location="cerebellum", device=device
    )
    for ch in range(4):
        nwb.add_electrode(group=group, location="cerebellum", x=0.0, y=float(20 * ch), z=0.0)
    nwb.units = None
    from pynwb.misc import Units

    nwb.units = Units(name="units", description="mock units", resolution=1 / 30000.0, waveform_rate=30000.0)
    for name in extra_columns or {}:
        nwb.add_unit_column(name=name, description=f"mock column {name}")
    ids = list(range(n_units)) if unit_ids is None else list(unit_ids)
    t = np.arange(90) / 30.0
    for i, uid in enumerate(ids):
        n = int(rng.poisson(rate_hz * duration_s))
        st = np.sort(rng.uniform(0, duration_s, n))
        wf = -np.exp(-((t - 1.0) ** 2) / 0.05)[:, None] * np.array([1.0, 0.6, 0.3, 0.1])[None, :]
        row = {k: v[i] for k, v in (extra_columns or {}).items()}
        nwb.add_unit(
            id=uid, spike_times=st, waveform_mean=wf.astype(np.float32), electrodes=[0, 1, 2, 3], **row
        )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)
    return path
