"""Human judgements for the rank-difference study: votes in SQLite, a majority per pair, CSV in and out."""
from __future__ import annotations

import csv
import sqlite3
import time
from pathlib import Path

from fecsearch.store import import_sqlite_utils

sqlite_utils = import_sqlite_utils()


ANSWERS = ("left", "right", "same")


class MissingVote(LookupError):
    pass


class VoteStore:
    """votes(query, left, right, rater, answer, created_at); one vote per rater and pair.

    A pair is stored in a fixed order (left < right), so the same question asked with the faces
    swapped is the same question.
    """

    def __init__(self, path: str | Path):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite_utils.Database(sqlite3.connect(path, timeout=60))
        if "votes" not in self.db.table_names():
            self.db["votes"].create({"query": str, "left": str, "right": str, "rater": str, "answer": str,
                                     "created_at": float}, pk=("query", "left", "right", "rater"))

    @staticmethod
    def ordered(first: str, second: str, answer: str) -> tuple[str, str, str]:
        if first <= second:
            return first, second, answer
        return second, first, {"left": "right", "right": "left", "same": "same"}[answer]

    def add(self, query: str, first: str, second: str, rater: str, answer: str) -> None:
        if answer not in ANSWERS:
            raise ValueError(f"answer must be one of {', '.join(ANSWERS)}, not '{answer}'")
        left, right, answer = self.ordered(first, second, answer)
        self.db["votes"].upsert({"query": query, "left": left, "right": right, "rater": rater, "answer": answer,
                                 "created_at": time.time()}, pk=("query", "left", "right", "rater"))

    def has_vote(self, query: str, first: str, second: str, rater: str) -> bool:
        left, right, _ = self.ordered(first, second, "same")
        return bool(self.db.execute("select 1 from votes where query=? and left=? and right=? and rater=?",
                                    [query, left, right, rater]).fetchone())

    def has_answer(self, query: str, first: str, second: str) -> bool:
        """Whether anyone has voted on this pair."""
        left, right, _ = self.ordered(first, second, "same")
        return bool(self.db.execute("select 1 from votes where query=? and left=? and right=?",
                                    [query, left, right]).fetchone())

    def answered(self, rater: str) -> set[tuple[str, str, str]]:
        """The (query, left, right) pairs this rater has voted on, in stored order."""
        return set(self.db.execute("select query, left, right from votes where rater = ?", [rater]).fetchall())

    def compare(self, query: str, first: str, second: str) -> int:
        """+1 if the majority of raters found `first` closer, -1 for `second`, 0 for a tie."""
        left, right, _ = self.ordered(first, second, "same")
        rows = self.db.execute("select answer from votes where query=? and left=? and right=?",
                               [query, left, right]).fetchall()
        if not rows:
            raise MissingVote(f"no vote yet on query {query}: {first} against {second}")
        score = sum({"left": 1, "right": -1, "same": 0}[a] for (a,) in rows)
        verdict = (score > 0) - (score < 0)
        return verdict if first == left else -verdict

    def export_csv(self, path: str | Path) -> int:
        rows = list(self.db.query("select query, left, right, rater, answer, created_at from votes order by rowid"))
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, ["query", "left", "right", "rater", "answer", "created_at"])
            writer.writeheader()
            writer.writerows(rows)
        return len(rows)

    def import_csv(self, path: str | Path) -> int:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        for r in rows:
            self.add(r["query"], r["left"], r["right"], r["rater"], r["answer"])
        return len(rows)
