"""What the window draws from: the display pyramid of big photos. No Qt, no torch.

A photo far larger than the screen (an orthomosaic) is drawn as square tiles at power-of-two
levels; only the tiles on screen are built, at the level the zoom needs, on worker threads,
and kept in a cache bounded in bytes, so neither the photo nor any large part of it is ever
held whole. One module per job:

- ``grid``: the tile maths (``TileKey``, ``PyramidGrid``: level sizes, which tiles a
  rectangle touches, the level for a zoom);
- ``tile_cache``: ``TileCache``, least-recently-used tiles bounded in bytes;
- ``tiff_tiles``: ``TiffTileSource``, tiles from windows of a TIFF or from its overview
  levels; ``is_big_tiff_photo``, which TIFFs are shown this way;
- ``coarse``: coarse levels of a TIFF without overviews, built once in one pass and kept in
  the user's cache folder;
- ``mask_tiles``: the same tiles of a full-size mask, as coverage 0..255, updated in place
  after an edit (``MaskOccupancy``: which blocks hold any stone);
- ``tile_loader``: ``TileLoader``, builds wanted tiles on plain threads into the cache.
"""
