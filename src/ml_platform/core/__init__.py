"""Domain vocabulary with no I/O and no third-party imports."""
