"""``python -m fcm.cli``: the same as the ``fcm`` command."""

import sys

from fcm.cli.main import main

sys.exit(main())
