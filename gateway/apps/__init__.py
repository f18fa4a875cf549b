"""The apps on top: the CLI and what it runs (read, scan, demo, top, watch, the HTTP server)."""
