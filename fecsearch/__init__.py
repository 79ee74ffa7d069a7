"""fecsearch: find faces by facial expression with a compact expression embedding.

An implementation of "A Compact Embedding for Facial Expression Similarity" (Vemulapalli &
Agarwala, CVPR 2019). The pipeline, one subpackage per stage:

    faces/ -> models/ -> store/ -> vectors/ -> ingest/, query/ -> serve/, cli/
    data/ -> evaluation/ -> train/

For programs:

    import fecsearch
    index = fecsearch.open_index("indexes/default")
    for result in index.search_image("smile.jpg", k=5):
        print(result.distance, result.path, result.box)
"""

__version__ = "0.1.0"


def open_index(index_dir="indexes/default", device: str | None = None, detector_config=None, runtime: str = "auto"):
    """An index opened read-only for searching (see fecsearch.query.search.Searcher). runtime:
    "onnx" (ONNX Runtime, no torch), "torch", or "auto" (ONNX Runtime where the model has a graph)."""
    from fecsearch.query.search import Searcher

    return Searcher(index_dir, device=device, detector_config=detector_config, runtime=runtime)
