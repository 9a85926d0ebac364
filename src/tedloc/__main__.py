import sys

from tedloc.cli import main

sys.exit(main())
