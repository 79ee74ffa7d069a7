"""Searching an index, contact sheets and album summaries."""
