import sys

from edgebridge.cli import main

sys.exit(main())
