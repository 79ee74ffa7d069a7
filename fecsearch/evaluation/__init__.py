"""The paper's evaluations: triplet accuracy, K-NN AUC, retrieval, rank-difference."""

# The rank-difference study's defaults (evaluation/rankdiff.py): `bench rank-diff` and the rating
# page of `serve` draw the same queries from them. Here, so the command line reads them without numpy.
STUDY_QUERIES = 100
STUDY_MAX_N = 10
STUDY_SEED = 0
