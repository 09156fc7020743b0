import sys

from seeds_gen.cli import main

sys.exit(main())
