"""The index that finds benchmark strings (`benchmarks.texts`) inside generated rows.

An Aho-Corasick automaton (pyahocorasick), so one pass over a row finds any of thousands of
strings; the seeds step and the decontaminate stage both use it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from benchmarks.texts import BenchmarkText


class ContaminationIndex:
    """Finds any benchmark string inside a text, in one pass (Aho-Corasick).

    Case-insensitive by default (generated data: the original lower-cases both sides);
    `case_sensitive=True` for seeds, where the original compared as is.
    """

    def __init__(self, texts: Iterable[BenchmarkText], case_sensitive: bool = False) -> None:
        import ahocorasick

        self.case_sensitive = case_sensitive
        self.automaton = ahocorasick.Automaton()
        self.size = 0
        digest = hashlib.sha256(f"case_sensitive={case_sensitive}".encode())
        for t in texts:
            key = t.text if case_sensitive else t.text.lower()
            if key and key not in self.automaton:
                self.automaton.add_word(key, t)
                self.size += 1
                digest.update(f"\x1e{t.benchmark}\x1f{key}".encode())
        # What is matched, by content: a changed benchmark file changes every stage that uses it.
        self.fingerprint = digest.hexdigest()[:16]
        if self.size:
            self.automaton.make_automaton()

    def match(self, text: str) -> BenchmarkText | None:
        """The first benchmark string found in `text`, or None."""
        if not self.size:
            return None
        for _end, found in self.automaton.iter(text if self.case_sensitive else text.lower()):
            return found
        return None

    def contaminated(self, text: str) -> bool:
        return self.match(text) is not None
