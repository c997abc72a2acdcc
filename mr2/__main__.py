import sys

from mr2_cli.cli import main

sys.exit(main())
