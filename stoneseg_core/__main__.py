import sys

from stoneseg_core.cli import main

sys.exit(main())
