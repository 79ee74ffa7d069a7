"""The HTTP server: JSON API, search page and rating page."""
