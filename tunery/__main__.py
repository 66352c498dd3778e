import sys

from tunery.cli import main

sys.exit(main())
