"""The rating page's study: pairs for people to judge, and their votes."""
from __future__ import annotations

import hashlib
import io
import threading
from dataclasses import dataclass
from pathlib import Path

from starlette.exceptions import HTTPException

from fecsearch.faces.images import BadImage, load_image


@dataclass
class RatingPair:
    number: int
    query: str
    first: str
    second: str


class Rating:
    """The rank-difference study's questions, served one by one to each named rater; answers go to
    the same VoteStore that `fecsearch bench rank-diff --judge people` reads."""

    def __init__(self, study, votes_db: str | Path):
        from fecsearch.store.votes import VoteStore

        self.study = study
        self.votes_db = Path(votes_db)
        VoteStore(self.votes_db)  # create the table now
        self.pairs = [RatingPair(i, *p) for i, p in enumerate(study.pairs())]
        self.face_number = {name: i for i, name in enumerate(study.names)}
        self._local = threading.local()

    def votes(self):
        from fecsearch.store.votes import VoteStore

        if not hasattr(self._local, "votes"):
            self._local.votes = VoteStore(self.votes_db)
        return self._local.votes

    @staticmethod
    def swapped(rater: str, pair: RatingPair) -> bool:
        """Show each rater a pair's faces in an order of their own, so position cannot bias the study."""
        return hashlib.sha256(f"{rater}\n{pair.number}".encode()).digest()[0] % 2 == 1

    def next_question(self, rater: str) -> dict:
        answered = self.votes().answered(rater)
        todo = [p for p in self.pairs if (p.query, *sorted((p.first, p.second))) not in answered]
        progress = {"rater": rater, "answered": len(self.pairs) - len(todo), "total": len(self.pairs)}
        if not todo:
            return {**progress, "question": None}
        pair = todo[0]
        left, right = (pair.second, pair.first) if self.swapped(rater, pair) else (pair.first, pair.second)
        url = lambda name: f"/api/rating/faces/{self.face_number[name]}"  # noqa: E731
        return {**progress, "question": {"pair": pair.number, "query": pair.query, "left": left, "right": right,
                                         "query_image": url(pair.query), "left_image": url(left),
                                         "right_image": url(right)}}

    def vote(self, rater: str, number: int, left: str, right: str, answer: str) -> None:
        if not 0 <= number < len(self.pairs):
            raise HTTPException(404, f"pair {number} is not in this study")
        pair = self.pairs[number]
        if sorted((left, right)) != sorted((pair.first, pair.second)):
            raise HTTPException(400, f"pair {number} compares {pair.first} and {pair.second}, not {left} and {right}")
        try:
            self.votes().add(pair.query, left, right, rater, answer)
        except ValueError as err:
            raise HTTPException(400, str(err)) from None

    def face_image(self, number: int) -> bytes:
        if not 0 <= number < len(self.study.paths):
            raise HTTPException(404, f"face {number} is not in this study")
        try:
            picture = load_image(self.study.paths[number])
        except BadImage as err:
            raise HTTPException(404, str(err)) from None
        buffer = io.BytesIO()
        picture.save(buffer, "PNG")
        return buffer.getvalue()

    def describe(self) -> dict:
        return {"enabled": True, "data": str(self.study.data_dir), "queries": len(self.study.queries),
                "pairs": len(self.pairs), "votes": str(self.votes_db)}
