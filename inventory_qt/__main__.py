"""``python -m inventory_qt`` starts the app."""

import sys

from inventory_qt.app import main

sys.exit(main())
