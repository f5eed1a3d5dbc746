"""Evidence packages: one takedown event (or a set of URLs) as a self-contained, signed,
optionally time-stamped bag a reader can hand on (docs/evidence.md)."""

import os
from pathlib import Path

# Where `crawler evidence keygen` puts the key, and where packaging looks for it by default.
# Here, not in signing, so that the command line names it without loading cryptography.
DEFAULT_KEY = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / \
    "crawler" / "evidence-key.pem"
