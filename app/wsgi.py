"""The serving entry point (gunicorn ``app.wsgi:app``): the app, with its scheduler started.

Only serving processes compete for the scheduler's leader lock; CLI commands and tests
create apps without starting it. Each gunicorn worker imports this module itself
(``preload_app`` stays off), so each runs its own leader-election thread.
"""

import sys

from app import ConfigError, create_app

try:
    app = create_app()
except ConfigError as error:
    sys.stderr.write(f"Configuration error: {error}\n")
    raise SystemExit(4) from None

app.extensions["scheduler"].start()
