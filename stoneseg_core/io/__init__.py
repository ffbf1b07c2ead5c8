"""Files: photos and masks (atomic writes), GeoTIFFs, tiled-TIFF writing, the project folder. No torch."""
