import sys

from freenet.cli import main

sys.exit(main())
