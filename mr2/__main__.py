import sys

from mr2.cli import main

sys.exit(main())
