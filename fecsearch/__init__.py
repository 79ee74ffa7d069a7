"""fecsearch: find faces by facial expression with a compact expression embedding.

An implementation of "A Compact Embedding for Facial Expression Similarity" (Vemulapalli &
Agarwala, CVPR 2019): faces -> models -> store -> index/query -> evaluation.
"""

__version__ = "0.1.0"
