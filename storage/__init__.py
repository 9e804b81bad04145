"""Everything ACE writes to disk: content keys, atomic writes, Parquet array tables and the
layout of the working directory."""

from ace.storage.keys import content_key, file_digest
from ace.storage.layout import WorkDir
from ace.storage.tables import ArrayTable, write_table, read_table_meta

__all__ = ["content_key", "file_digest", "WorkDir", "ArrayTable", "write_table", "read_table_meta"]
