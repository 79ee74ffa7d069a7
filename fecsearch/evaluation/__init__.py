"""The paper's evaluations: triplet accuracy, K-NN AUC, retrieval, rank-difference."""
