"""The identity thresholds, measured on CK+48: same-person pairs, and people found by clustering.

    uv run python benchmarks/people_thresholds.py [--index PATH]

Indexes CK+48's 981 faces (118 subjects; `--cropped`: each image is a face) into a temporary
index (or reuses --index), gives them identity descriptors as `fecsearch people` does, then:
  - pairs: same-subject vs different-subject AUC; for each cosine threshold, the share of
    same-subject pairs above it and of different-subject pairs above it;
  - clusters (people.cluster.find_people at each SAME_PERSON threshold): how many people of two or
    more faces, their purity (faces whose person's majority subject is their own), how many true
    subjects are split over several people, the faces left alone, and the adjusted Rand index
    against the true subjects (faces left alone count as people of one).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
from sklearn.metrics import adjusted_rand_score, roc_auc_score

from fecsearch.models.identity import IdentityNetwork
from fecsearch.people.cluster import find_people
from fecsearch.people.describe import describe_missing
from fecsearch.query.search import Searcher
from fecsearch.store.database import FaceStore

CKPLUS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ckplus48"


def subject_of(path: str) -> str:
    return Path(path).name.split("_")[0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--index", type=Path, default=None)
    args = parser.parse_args()
    index = args.index or Path(tempfile.mkdtemp()) / "ckplus"
    if not (index / "faces.db").exists():
        subprocess.run([sys.executable, "-m", "fecsearch", "index", str(CKPLUS), "--cropped", "--index", str(index),
                        "--quiet", "--no-identities"], check=True)
    store = FaceStore(index)
    describe_missing(store, IdentityNetwork())
    ids, d = store.identities()
    paths = {r["id"]: r["path"] for r in store.iter_faces()}
    subjects = np.array([subject_of(paths[int(i)]) for i in ids])
    upper = np.triu_indices(len(ids), 1)
    same = (subjects[:, None] == subjects[None, :])[upper]
    cos = (d @ d.T)[upper]
    report = {"faces": len(ids), "subjects": len(set(subjects)), "pair_auc": round(float(roc_auc_score(same, cos)), 4),
              "thresholds": {}}
    for t in (0.5, 0.55, 0.6, 0.65, 0.7, 0.75):
        summary = find_people(store, threshold=t)
        person = store.face_people()
        members: dict[int, list[str]] = {}
        for face_id, subject in zip(ids.tolist(), subjects):
            if face_id in person:
                members.setdefault(person[face_id], []).append(subject)
        pure = sum(Counter(m).most_common(1)[0][1] for m in members.values())
        labels = [person.get(face_id, -face_id) for face_id in ids.tolist()]  # alone: a person of one
        split = Counter(s for m in members.values() for s in set(m))
        report["thresholds"][str(t)] = {
            "same_pairs_above": round(float((cos[same] >= t).mean()), 4),
            "different_pairs_above": round(float((cos[~same] >= t).mean()), 5),
            "people": summary.people, "purity": round(pure / max(1, sum(len(m) for m in members.values())), 4),
            "subjects_split": sum(1 for c in split.values() if c > 1), "faces_alone": summary.alone,
            "adjusted_rand_index": round(float(adjusted_rand_score(subjects, labels)), 4)}
        print(t, json.dumps(report["thresholds"][str(t)]), flush=True)
    # the two stages alone, for comparison: average linkage over every pair of faces (memory grows
    # with the square of the faces), and Chinese whispers alone on the k-NN graph
    from scipy.cluster.hierarchy import fcluster, linkage

    from fecsearch.people.cluster import IdentityIndex, chinese_whispers

    def scored(labels) -> dict:
        groups: dict[int, list[str]] = {}
        for label, subject in zip(labels, subjects):
            groups.setdefault(int(label), []).append(subject)
        pure = sum(Counter(m).most_common(1)[0][1] for m in groups.values()) / len(subjects)
        return {"people": len(groups), "purity": round(pure, 4),
                "adjusted_rand_index": round(float(adjusted_rand_score(subjects, labels)), 4)}

    everything = linkage(np.clip(1 - cos, 0, 2), "average")
    whispers = IdentityIndex(store).neighbours()
    report["baselines"] = {
        **{f"average_linkage_all_pairs_{t}": scored(fcluster(everything, 1 - t, "distance")) for t in (0.6, 0.65, 0.7)},
        **{f"chinese_whispers_alone_{t}": scored(chinese_whispers(*whispers, threshold=t)) for t in (0.6, 0.65, 0.7)}}
    # --other-people with the shipped thresholds: every face as a query, its 10 nearest expressions
    find_people(store)
    searcher = Searcher(index)
    subject_of_face = dict(zip(ids.tolist(), subjects))
    leaked, left_out = 0, []
    for face_id in ids.tolist():
        q = searcher.query_face_id(face_id, identity=True)
        exclude = searcher.other_people(q)
        left_out.append(len(exclude))
        results = searcher.search(q.vector, 10, exclude=exclude)
        leaked += sum(subject_of_face[r.face_id] == subject_of_face[face_id] for r in results)
    report["other_people"] = {"queries": len(ids), "results_of_query_subject_in_top10": int(leaked),
                              "faces_left_out_median": float(np.median(left_out)),
                              "query_subject_faces_median": float(np.median(list(Counter(subjects).values())))}
    report["photos"] = photo_pairs()
    print(json.dumps(report, indent=2))


def photo_pairs() -> dict:
    """../shared/data/photos indexed with identities and clustered; its labelled pairs (master.csv,
    the largest face of each photo): same-person pairs placed in one person, and different-person
    pairs wrongly placed in one."""
    import csv

    photos = CKPLUS.parent / "photos"
    index = Path(tempfile.mkdtemp()) / "photos"
    subprocess.run([sys.executable, "-m", "fecsearch", "index", str(photos), "--index", str(index), "--quiet"],
                   check=True, stdout=subprocess.DEVNULL)
    store = FaceStore(index)
    summary = find_people(store)
    person, largest = store.face_people(), {}
    for row in store.iter_faces():
        name, area = Path(row["path"]).name, (row["x2"] - row["x1"]) * (row["y2"] - row["y1"])
        if name not in largest or area > largest[name][0]:
            largest[name] = (area, row["id"])
    together = {True: [0, 0], False: [0, 0]}  # same person? -> [in one person, pairs]
    for a, b, decision in list(csv.reader(open(photos / "master.csv")))[1:]:
        if a in largest and b in largest:
            pa, pb = person.get(largest[a][1]), person.get(largest[b][1])
            same = decision.strip() == "Yes"
            together[same][0] += pa is not None and pa == pb
            together[same][1] += 1
    return {"faces": summary.faces, "people": summary.people, "faces_alone": summary.alone,
            "same_person_pairs_together": f"{together[True][0]}/{together[True][1]}",
            "different_person_pairs_together": f"{together[False][0]}/{together[False][1]}"}


if __name__ == "__main__":
    main()
