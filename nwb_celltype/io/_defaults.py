"""Defaults of remote reading, in a module of their own so that opening a local file imports no
HTTP stack (requests, urllib3, remfile): see :mod:`._remote`."""

#: Default upper bound of the on-disk cache, in bytes.
DEFAULT_CACHE_MAX_BYTES = 4 * 1024**3
#: Default per-request timeout (connect and between bytes), in seconds.
DEFAULT_TIMEOUT_S = 30.0
#: Default number of retries of a transient failure (connection error, timeout, 429, 5xx).
DEFAULT_RETRIES = 3
#: Largest span of a remote file that is fetched whole into a local spill file, in bytes.
DEFAULT_SPILL_MAX_BYTES = 8 * 1024**3
#: Default overall deadline of one remote source's reads, in s (env NWB_CELLTYPE_DEADLINE_S).
DEFAULT_DEADLINE_S = 4 * 3600.0
#: Default lowest average throughput of a response body once ``timeout_s`` has passed, in bytes/s
#: (env NWB_CELLTYPE_MIN_BYTES_PER_S): a server dripping bytes never trips the idle timeout.
DEFAULT_MIN_BYTES_PER_S = 1024.0
