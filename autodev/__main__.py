import sys

from autodev.cli import main

sys.exit(main())
