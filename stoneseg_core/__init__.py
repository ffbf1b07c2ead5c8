"""StoneSeg core: read photos and masks, train and run a U-Net, measure stones.

This package never imports Qt, so scripts, the command line and the GUI can all use it.
"""

import os

# PyTorch's OpenMP threads spin while they wait. When anything else wants the cores (the
# window's own thread while training runs in the background, another program), measured on
# a 2-core machine: a small tensor op went from 8 microseconds to 8 milliseconds, and a
# training step of 64-px crops 50x slower. Passive waiting keeps it at 28 microseconds.
# Set before torch is first imported; a user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
