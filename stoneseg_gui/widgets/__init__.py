"""Shared pieces of the window: icons, the colour theme, the dialogs seam."""
