"""Grain analysis in the window: the Grains dock, its distribution plot and canvas tools."""
