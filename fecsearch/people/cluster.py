"""People: faces grouped by identity descriptor, with no number of people given in advance.

Two stages, both with thresholds on the cosine of descriptors:
  1. Chinese whispers (Biemann, 2006; dlib clusters faces with it) on the graph linking each face
     to those of its 10 nearest faces whose cosine is at least GROUP_THRESHOLD: small, very pure
     groups (near-identical frames, the same person in similar light), in linear time.
  2. Average linkage over the groups' mean directions, merged while the average cosine is at
     least SAME_PERSON: a stranger who resembles one photo of someone does not join them, as
     they would with single linkage or connected components.
Neither needs a number of people. On CK+48 (981 faces, 118 subjects) this finds 139 people of
purity 0.93 (adjusted Rand index 0.87), as good as average linkage over all pairs of faces (147,
0.95, 0.86) at a fraction of its memory: stage 2 holds a matrix of groups, not of faces, and past
LINKAGE_GROUPS groups clusters their k-NN graph instead. `benchmarks/people_thresholds.py`
measures accuracy, `benchmarks/bench_people_scale.py` cost (benchmarks/RESULTS.md).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Stage 1: the cosine that links two faces into one small group (CK+48: 98.5% pure groups).
GROUP_THRESHOLD = 0.80
# Stage 2: the average cosine between two groups' faces for them to be one person (CK+48: the
# best adjusted Rand index, at 139 people for 118 subjects).
SAME_PERSON = 0.65
# Cosine above which a face counts as the query's own identity for --other-people, besides the
# faces of the person the query belongs to: lower than SAME_PERSON, because leaving out a stranger
# costs one result while keeping the query's subject defeats the filter (CK+48: 98% of same-subject
# pairs are above it, 4% of different-subject pairs; the photos' labelled pairs: all, and 5%).
SAME_PERSON_LOOSE = 0.55
NEIGHBOURS = 10
# Stage 2's average linkage holds a matrix of groups: 8,000 groups take 256 MB.
LINKAGE_GROUPS = 8000


class IdentityIndex:
    """The identity descriptors of an index in a FAISS inner-product index (exact), built from the
    database when opened: the database is the source of truth."""

    def __init__(self, store):
        import faiss

        self.ids, self.descriptors = store.identities()
        dim = self.descriptors.shape[1] if len(self.ids) else 1
        self.index = faiss.IndexIDMap(faiss.IndexFlatIP(dim))
        if len(self.ids):
            self.index.add_with_ids(np.ascontiguousarray(self.descriptors), self.ids)

    def __len__(self) -> int:
        return len(self.ids)

    def same_person(self, descriptor: np.ndarray, threshold: float = SAME_PERSON_LOOSE, with_cosines: bool = False):
        """The face ids whose descriptor's cosine with `descriptor` is at least `threshold` (and
        those cosines, with_cosines=True)."""
        if not len(self.ids):
            return (np.zeros(0, np.int64), np.zeros(0, np.float32)) if with_cosines else np.zeros(0, np.int64)
        query = np.ascontiguousarray(np.asarray(descriptor, np.float32).reshape(1, -1))
        _, cosines, ids = self.index.range_search(query, float(threshold))
        ids = np.asarray(ids, np.int64)
        return (ids, np.asarray(cosines, np.float32)) if with_cosines else ids

    def neighbours(self, k: int = NEIGHBOURS) -> tuple[np.ndarray, np.ndarray]:
        """Each face's k nearest faces (itself among them): cosines [n, k] and positions [n, k] (-1: none)."""
        k = min(k, len(self.ids))
        sims, found = self.index.search(np.ascontiguousarray(self.descriptors), k)
        position = {int(face_id): i for i, face_id in enumerate(self.ids)}
        return sims, np.vectorize(lambda f: position.get(int(f), -1), otypes=[np.int64])(found)


def chinese_whispers(sims: np.ndarray, neighbours: np.ndarray, threshold: float, iterations: int = 30,
                     seed: int = 0) -> np.ndarray:
    """Cluster labels [n] from a k-NN graph (neighbours[i]: positions, sims[i]: their cosines)."""
    n = len(neighbours)
    edges = [[(int(j), float(s)) for j, s in zip(neighbours[i], sims[i]) if j >= 0 and j != i and s >= threshold]
             for i in range(n)]
    # the graph made symmetric: j listens to i whenever i listens to j
    linked: list[dict[int, float]] = [dict() for _ in range(n)]
    for i, out in enumerate(edges):
        for j, s in out:
            linked[i][j] = max(s, linked[i].get(j, 0.0))
            linked[j][i] = max(s, linked[j].get(i, 0.0))
    labels = np.arange(n)
    rng = np.random.default_rng(seed)
    for _ in range(iterations):
        changed = 0
        for i in rng.permutation(n):
            if not linked[i]:
                continue
            weight: dict[int, float] = {}
            for j, s in linked[i].items():
                weight[labels[j]] = weight.get(labels[j], 0.0) + s
            best = max(weight.items(), key=lambda item: (item[1], -item[0]))[0]
            if best != labels[i]:
                labels[i], changed = best, changed + 1
        if not changed:
            break
    _, labels = np.unique(labels, return_inverse=True)
    return labels


@dataclass
class PeopleSummary:
    faces: int
    people: int  # clusters of at least min_faces faces
    alone: int  # faces in no such cluster
    named_kept: int  # named people found again

    def to_dict(self) -> dict:
        return {"faces": self.faces, "people_found": self.people, "faces_alone": self.alone,
                "named_people_kept": self.named_kept}


def cluster_descriptors(descriptors: np.ndarray, neighbours: tuple[np.ndarray, np.ndarray],
                        threshold: float = SAME_PERSON, group_threshold: float = GROUP_THRESHOLD) -> np.ndarray:
    """Cluster labels [n] of unit descriptors, given their k-NN graph (IdentityIndex.neighbours).

    Stage 2 holds the groups' pairwise distances (8 bytes a pair): up to LINKAGE_GROUPS groups.
    Past that, the groups' own k-NN graph is clustered the way stage 1 clusters faces."""
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import pdist

    groups = chinese_whispers(*neighbours, threshold=group_threshold)
    count = groups.max() + 1
    if count == 1:
        return groups
    sums = np.zeros((count, descriptors.shape[1]), np.float64)
    np.add.at(sums, groups, descriptors)
    directions = sums / np.linalg.norm(sums, axis=1, keepdims=True)
    if count <= LINKAGE_GROUPS:
        people = fcluster(linkage(pdist(directions, "cosine"), "average"), 1.0 - threshold, "distance") - 1
    else:
        import faiss

        index = faiss.IndexFlatIP(directions.shape[1])
        index.add(np.ascontiguousarray(directions, np.float32))
        sims, found = index.search(np.ascontiguousarray(directions, np.float32), min(NEIGHBOURS, count))
        people = chinese_whispers(sims, found, threshold=threshold)
    return people[groups]


def find_people(store, threshold: float = SAME_PERSON, min_faces: int = 2) -> PeopleSummary:
    """Cluster every described face of `store` into people and store who is who.

    A person is a cluster of at least min_faces faces (a face alone is nobody yet). Names survive:
    each named person's id goes to the new cluster holding most of their faces (the largest overlap
    first); other clusters take the id of the unnamed person they overlap most, or a new one."""
    index = IdentityIndex(store)
    if not len(index):
        store.set_people({})
        return PeopleSummary(0, 0, 0, 0)
    labels = cluster_descriptors(index.descriptors, index.neighbours(), threshold)
    clusters: dict[int, list[int]] = {}
    for face_id, label in zip(index.ids.tolist(), labels.tolist()):
        clusters.setdefault(label, []).append(face_id)
    groups = [faces for faces in clusters.values() if len(faces) >= min_faces]
    before = store.face_people()
    named = store.named_people()
    overlaps = []  # (faces in common, named?, old person, group)
    for g, faces in enumerate(groups):
        counts: dict[int, int] = {}
        for face_id in faces:
            if face_id in before:
                counts[before[face_id]] = counts.get(before[face_id], 0) + 1
        overlaps += [(count, person in named, person, g) for person, count in counts.items()]
    # named people claim their clusters first, then the largest overlaps
    overlaps.sort(key=lambda o: (not o[1], -o[0], o[2], o[3]))
    person_of_group: dict[int, int] = {}
    taken: set[int] = set()
    for _, _, person, g in overlaps:
        if g not in person_of_group and person not in taken:
            person_of_group[g], taken = person, taken | {person}
    next_id = max([*before.values(), *named, *taken, 0]) + 1
    assignment = {}
    for g, faces in enumerate(groups):
        if g not in person_of_group:
            person_of_group[g], next_id = next_id, next_id + 1
        assignment.update({face_id: person_of_group[g] for face_id in faces})
    store.set_people(assignment)
    kept = sum(1 for person in named if person in taken)
    return PeopleSummary(len(index), len(groups), len(index) - len(assignment), kept)
