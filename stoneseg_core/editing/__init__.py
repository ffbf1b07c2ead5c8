"""Editing masks: the mask document with undo, the mouse tools, crash recovery. No torch."""
