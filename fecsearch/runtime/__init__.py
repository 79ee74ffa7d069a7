"""Where the networks run: ONNX Runtime sessions (no torch needed), or torch."""
from pathlib import Path

# The weights and exported graphs fecsearch ships (models' safetensors, their .onnx, MTCNN's .onnx).
WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
