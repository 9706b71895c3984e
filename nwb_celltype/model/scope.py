"""Units recorded outside the cerebellar cortex get no label (numpy only).

Every model of this package learnt the cell types of the cerebellar cortex (C4's five classes). A
unit whose electrode's ``location`` names a brain region outside it — another structure a
Neuropixels probe passes through on its way, or the cerebellar nuclei — is none of them, whatever
its discharge looks like: it keeps its probabilities, and its label is withheld (status
``unclassified``, reason :func:`~nwb_celltype.reasons.outside_reason`, first in its reasons).
Locations that say nothing (free text, fibre tracts, "CB") withhold nothing. The scope of each
location is decided in the reading layer (:func:`nwb_celltype.io.location_scope`);
``annotate(any_region=True)`` turns the rule off."""

from __future__ import annotations

import numpy as np

from ..reasons import OUTSIDE_REASON, join_reasons, outside_reason

__all__ = ["OUTSIDE_REASON", "outside_reason", "withhold_outside_cerebellar_cortex"]


def withhold_outside_cerebellar_cortex(preds, outside: np.ndarray, locations: np.ndarray) -> np.ndarray:
    """Withhold, in place, the label of every scored unit with ``outside`` True (``locations``: each
    unit's electrode location, for the reason); returns which units it withheld (classified ones
    become ``unclassified``; unclassified ones keep their status, with this reason first)."""
    outside = np.asarray(outside, dtype=bool)
    hit = outside & (np.asarray(preds.status, dtype=object) != "not_classifiable")
    if not hit.any():
        return hit
    labels = np.asarray(preds.labels, dtype=object).copy()
    status = np.asarray(preds.status, dtype=object).copy()
    reasons = np.asarray(preds.reasons, dtype=object).copy()
    for i in np.flatnonzero(hit):
        labels[i], status[i] = "unclassified", "unclassified"
        reasons[i] = join_reasons(filter(None, [outside_reason(str(locations[i])), str(reasons[i] or "")]))
    preds.labels, preds.status, preds.reasons = labels, status, reasons
    return hit
