"""``python -m lumos_mcp`` is ``lumos-mcp``."""

import sys

from lumos_mcp.cli import main

sys.exit(main())
