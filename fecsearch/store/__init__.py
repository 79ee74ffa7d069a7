"""The SQLite database, the source of truth of an index, and the rating study's votes."""
