"""StoneSeg desktop application (PySide6)."""
