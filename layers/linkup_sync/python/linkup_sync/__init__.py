"""linkup-sync: FreeStyle Libre readings from LibreLink Up into Nightscout."""

#: The one place the version is written: pyproject.toml reads it (dynamic version), CHANGELOG.md follows it.
__version__ = "0.1.0"
