"""Faces from images: reading files, detecting faces (MTCNN) and aligning them."""
