"""What one :func:`nwb_celltype.annotate` run did (:class:`AnnotationResult`); its own module so
that the run (``annotate.py``) and its record stay readable apart. Importable from
:mod:`nwb_celltype.annotate` as before."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class AnnotationResult:
    """What one annotate run did.

    Attributes
    ----------
    output_path : str
        The NWB file that holds the annotations, as an absolute path (the input itself for
        in-place runs).
    table_name : str
        Name of the annotation table written (in processing module ``cell_types``).
    mode : str
        ``copy`` (an annotated copy of a local file), ``in_place`` (the input itself) or ``derived``
        (a new file for a remote source).
    n_units : int
        Units in the source; every one has a row.
    n_classified, n_unclassified, n_not_classifiable : int
        Units with a label; with features but no label (below the threshold, or the model
        abstained); without usable features.
    label_counts : dict
        Label -> count, including ``unclassified`` and ``not_classifiable``.
    threshold : float
        The confidence-ratio threshold applied.
    source : dict
        The source as opened (:meth:`nwb_celltype.io.SourceInfo.to_dict`: kind, path or URL, ...).
    model : dict
        ``name``, ``version`` and ``sha256`` of the model bundle.
    demo_model : bool
        The model is the demo model, trained on simulated data: not for scientific conclusions.
    timings : dict
        Seconds spent reading, computing features, running the model and writing.
    skipped, unclassified : list of dict
        ``unit_id`` and ``reason`` of every not-classifiable / unclassified unit (a unit whose
        confidence was below the threshold: "confidence ratio below the threshold (1.49 < 2)", for a
        unit scored without its waveform followed by "; scored from its discharge alone ...").
    ignore_waveforms : bool
        Every unit was scored from its discharge alone (``annotate(..., ignore_waveforms=True)``).
    units_columns : list of str
        The Units columns the labels were copied into: ``cell_type``, ``cell_type_probability``,
        ``cell_type_confidence``, or their model-suffixed names when the plain ones were taken.
    """

    output_path: str
    table_name: str
    mode: str
    n_units: int
    n_classified: int
    n_unclassified: int
    n_not_classifiable: int
    label_counts: dict[str, int]
    threshold: float
    timings: dict[str, float]
    source: dict
    model: dict
    skipped: list[dict] = field(default_factory=list)
    demo_model: bool = False
    #: ``{"unit_id", "reason"}`` of every unclassified unit: the model's own abstention reason (out of
    #: distribution, members disagree, below the label's ratio floor), or "confidence ratio below the threshold (r < t)"
    #: (for a unit scored without its waveform followed by "; scored from its discharge alone ...")
    unclassified: list[dict] = field(default_factory=list)
    #: every unit was scored from its discharge alone (``ignore_waveforms``)
    ignore_waveforms: bool = False
    #: the Units columns written (plain names, or model-suffixed where the plain ones were taken)
    units_columns: list[str] = field(default_factory=list)
    #: the units' species against the model's training species
    #: (:meth:`.model.real_species.SpeciesCoverage.to_dict`: ``kind`` trained / not_trained / unstated /
    #: unrecorded, ``stated``, ``trained``, ``note``)
    species: dict | None = None
    #: the source's Units table that was annotated (``/units``, or one in a processing module)
    units_table: str = "/units"
    #: the waveforms' sampling rate used (``hz``) and where it came from (``source``: file, stated,
    #: assumed; "" without waveforms)
    waveform_rate: dict | None = None
    #: units whose label was withheld because their electrode's location is outside the cerebellar
    #: cortex (:mod:`nwb_celltype.model.scope`; 0 with ``any_region``)
    outside_cerebellar_cortex: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    def __repr__(self) -> str:  # short: the unit lists and dicts are counted, not shown
        from ._repr import compact_repr

        return compact_repr(
            self,
            output_path=self.output_path,
            mode=self.mode,
            model=f"{self.model.get('name', '')} {self.model.get('version', '')}".strip(),
            demo_model=self.demo_model or None,
            n_units=self.n_units,
            n_classified=self.n_classified,
            n_unclassified=self.n_unclassified,
            n_not_classifiable=self.n_not_classifiable,
            label_counts=self.label_counts,
            threshold=self.threshold,
            table_name=self.table_name,
            units_table=self.units_table,
        )


AnnotationResult.__module__ = "nwb_celltype.annotate"  # its public home (pickles and help name it)
