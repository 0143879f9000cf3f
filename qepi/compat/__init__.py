"""Private third-party APIs, one module per library, each behind a version check."""
