"""Shared pieces of the window: icons, colour theme, dialogs seam, canvas-mode contract."""
