"""Embedding models: a frozen trunk and a trained head, each with its own preprocessing."""
from fecsearch.models.checkpoints import read_checkpoint_config, save_checkpoint
from fecsearch.models.config import EMOTIONS, ModelConfig, Preprocess
from fecsearch.models.network import FaceEmbedder
from fecsearch.models.preprocess import prepare_face
from fecsearch.models.registry import DEFAULT_MODEL, MissingWeights, create_model, get_config, list_models

__all__ = ["DEFAULT_MODEL", "EMOTIONS", "FaceEmbedder", "MissingWeights", "ModelConfig", "Preprocess",
           "create_model", "get_config", "list_models", "prepare_face", "read_checkpoint_config",
           "save_checkpoint"]
