import sys

from motte.cli import main

sys.exit(main())
