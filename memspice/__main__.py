import sys

from memspice.cli import main

sys.exit(main())
