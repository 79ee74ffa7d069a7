"""Embedding models: a frozen trunk and a trained head, each with its own preprocessing."""
from .registry import (DEFAULT_MODEL, EMOTIONS, FaceEmbedder, MissingWeights, ModelConfig, Preprocess,
                       create_model, get_config, list_models, prepare_face, read_checkpoint_config,
                       save_checkpoint)

__all__ = ["DEFAULT_MODEL", "EMOTIONS", "FaceEmbedder", "MissingWeights", "ModelConfig", "Preprocess",
           "create_model", "get_config", "list_models", "prepare_face", "read_checkpoint_config",
           "save_checkpoint"]
