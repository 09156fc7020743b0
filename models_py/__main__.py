import sys

from models_py.cli import main

sys.exit(main())
