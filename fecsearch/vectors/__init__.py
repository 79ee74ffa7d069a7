"""Vectors: distances, exact K-NN, and the FAISS index rebuilt from the store."""
