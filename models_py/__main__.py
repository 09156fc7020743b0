import sys

from models_py.cli import main

if __name__ == "__main__":  # not in a spawned worker process (models_py.store)
    sys.exit(main())
