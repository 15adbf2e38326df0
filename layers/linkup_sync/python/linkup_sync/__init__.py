"""linkup-sync: FreeStyle Libre readings from LibreLink Up into Nightscout."""

__version__ = "0.1.0"
