"""StoneSeg in napari: an npe2 plugin (``napari.yaml``, installed with ``pip install
"stoneseg[napari]"``; docs/napari.md).

What it contributes, each a module of this package:

- ``reader``: a StoneSeg project folder (``images/`` with ``stoneseg.json`` or ``masks/``)
  opens as layers: each photo an image layer, its mask a labels layer (1 = stone), its
  per-stone labels (``instances/``) a labels layer of stones (``layers`` builds them);
- ``project_widget``: "Open StoneSeg project", one photo of a project at a time;
- ``segment_widget``: segments an image layer with a StoneSeg model folder on a napari thread
  worker (``Segmenter``, as the app does) into a labels layer;
- ``stones_widget``: splits a labels layer into stones and measures them
  (``grains.analyse_mask``), with the app's table of stones and grain-size curve;
- ``save_widget``: a labels layer back into the project as ``masks/<stem>.png`` (0/255) and,
  for stones, ``instances/<stem>.png``, with the project's own writers (``saving``).

The plugin calls the same public core functions as the app and never imports torch itself.
It runs on napari's PySide6 binding, the one StoneSeg installs (``common.check_binding``).
"""
