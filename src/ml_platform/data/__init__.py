"""The tenant's data area: files uploaded once, named by jobs as ``data_path: data/<path>``."""

from ml_platform.data.service import (
    DATA_PREFIX,
    DataArea,
    DataFileInfo,
    DataFilePage,
    DataUpload,
)

__all__ = ["DATA_PREFIX", "DataArea", "DataFileInfo", "DataFilePage", "DataUpload"]
