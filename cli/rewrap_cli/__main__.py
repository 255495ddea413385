import sys

from rewrap_cli.main import main

sys.exit(main())
