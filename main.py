"""DetScope desktop app: ``python main.py [--config NAME] [--screenshot PATH]`` (see ``--help``)."""
import sys

from app.main import main

if __name__ == "__main__":
    sys.exit(main())
