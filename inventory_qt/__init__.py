"""The Inventory Sync desktop app (PySide6)."""
