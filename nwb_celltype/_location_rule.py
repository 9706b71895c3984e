"""The location rule at every entry point that knows where its units were recorded (``annotate``
and ``annotate-dandiset`` from the electrodes table, ``predict`` from a features file that kept
the locations, ``classify_sorting`` / ``classify_tsgroup`` from a ``brain_area`` or ``location``
property): a unit whose location names a region outside the cerebellar cortex gets no label
(:mod:`nwb_celltype.model.scope`; the verdict on a location: :func:`nwb_celltype.io.location_scope`)."""

from __future__ import annotations

import logging
from collections import Counter

import numpy as np

from .reasons import is_outside_reason

logger = logging.getLogger("nwb_celltype")


def n_outside(preds) -> int:
    """Units whose label :func:`withhold_outside` withheld."""
    return sum(is_outside_reason(str(r)) for r in preds.reasons)


def withhold_outside(preds, locations) -> int:
    """:func:`.model.scope.withhold_outside_cerebellar_cortex` on the units' locations (one string
    per unit, "" where unknown), with a warning naming the regions; returns how many it withheld."""
    from .io import location_scope
    from .model.scope import withhold_outside_cerebellar_cortex

    locations = np.asarray(["" if x is None else str(x) for x in locations], dtype=object)
    outside = np.array([location_scope(x) == "outside" for x in locations], dtype=bool)
    hit = withhold_outside_cerebellar_cortex(preds, outside, locations)
    if hit.any():
        where = Counter(str(x) for x in locations[hit])
        logger.warning(
            "%d units were recorded outside the cerebellar cortex (%s): their labels are withheld "
            "(unclassified); any_region=True (--any-region) labels them anyway",
            int(hit.sum()),
            ", ".join(f"{k} {v}" for k, v in where.most_common(8)),
        )
    return int(hit.sum())
