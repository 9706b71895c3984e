"""Exception hierarchy of nwb-celltype: every error the package raises on purpose derives from
:class:`NwbCelltypeError`, and each also subclasses the builtin it resembles, so callers may catch
either. Messages say what was wrong, where, what was expected, and how to fix it."""

from __future__ import annotations


class NwbCelltypeError(Exception):
    """Base class of every error raised on purpose by nwb-celltype."""


class InvalidValueError(NwbCelltypeError, ValueError):
    """A value given to the package is out of range or of the wrong kind."""


class InvalidUnitsError(InvalidValueError):
    """Units data (spike times, waveforms, ids) cannot be used as given."""


class NoUnitsError(NwbCelltypeError):
    """The source holds no units to classify: no Units table at all (:class:`NoUnitsTableError`), or
    an empty one with no other table that has spike times (:class:`EmptyUnitsError`). A
    whole-dandiset run skips and reports such assets instead of failing them; an empty table beside
    one with spike times, or a ``--units-table`` the file lacks, is a failure, not this error."""


class EmptyUnitsError(NoUnitsError, InvalidUnitsError):
    """The Units table (or in-memory sorting) has no units, or no spike_times column."""


class InvalidAnnotationError(InvalidValueError):
    """Cell-type annotation values (labels, probabilities, regions) are inconsistent."""


class SourceError(NwbCelltypeError, OSError):
    """A data source could not be opened or read."""


class SourceNotFoundError(SourceError, LookupError):
    """The source (file, URL, dandiset, asset) does not exist."""


class NotNWBError(SourceError):
    """The source exists but is not an HDF5 NWB file, or lacks what is needed (e.g. Units)."""


class NoUnitsTableError(NoUnitsError, NotNWBError):
    """The NWB file has no Units table (behaviour, imaging or raw data only)."""


class RemoteError(SourceError):
    """A remote server failed: unreachable, HTTP error, stalled or cut connection."""


class FeatureError(NwbCelltypeError, ValueError):
    """Features cannot be computed from the given inputs or configuration."""


class ModelError(NwbCelltypeError, ValueError):
    """A model bundle is unreadable, corrupt or unsafe."""


class ModelMismatchError(ModelError):
    """A model bundle does not match the data or feature configuration it is used with."""


class UnsafeFileError(ModelError):
    """A file would need arbitrary code execution (pickle) to load and is refused."""


class OutputError(NwbCelltypeError, OSError):
    """An output cannot be written (location, permissions, space, collision with input)."""


class AnnotationExistsError(OutputError, FileExistsError):
    """Annotations by the same model already exist; pass overwrite to replace them."""


class LibraryError(NwbCelltypeError, ValueError):
    """A ground-truth library, its manifest or a label table is invalid."""
