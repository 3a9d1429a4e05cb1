import sys

from editbench.cli import main

if __name__ == "__main__":  # worker processes (--jobs) import this module under another name
    sys.exit(main())
