"""Indexing: walking a folder, embedding its faces and writing them to the store."""
