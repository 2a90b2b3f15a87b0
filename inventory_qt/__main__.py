"""``python -m inventory_qt`` starts the app; it is also the bundle's entry script (packaging/)."""

import multiprocessing
import sys

# Before the app's imports: in a bundle, a child process spawned by multiprocessing runs this
# script again, and freeze_support() then runs the child's target (and exits) without loading Qt.
multiprocessing.freeze_support()

from inventory_qt.app import main  # noqa: E402

sys.exit(main())
