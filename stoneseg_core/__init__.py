"""StoneSeg core: read photos and masks, train and run a U-Net, measure stones.

This package never imports Qt, so scripts, the command line and the GUI can all use it.
"""

__version__ = "0.1.0"
