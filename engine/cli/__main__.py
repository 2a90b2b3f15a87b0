"""``python -m engine.cli`` runs the command line; it is also the bundle's entry script (packaging/)."""

import multiprocessing
import sys

# Before the command line's imports: in a bundle, a child process spawned by multiprocessing runs
# this script again, and freeze_support() then runs the child's target (and exits).
multiprocessing.freeze_support()

from engine.cli import main  # noqa: E402

sys.exit(main())
