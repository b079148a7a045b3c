"""The one table of chapters: what the tour, the benchmarks, the gradient checks and the book
iterate.

A chapter is a package (its code), a notebook (``notebooks/<notebook>.ipynb``, a page of the
book) and one row here. Its ``key`` names it everywhere else: the ``chapter`` column of
``minimem gradcheck``, ``minimem bench <key>`` (module ``minimem.bench.<key>``, when the
chapter has a benchmark) and ``minimem tour --only <key>`` (module ``minimem.tour.<key>``).
Adding a chapter = one folder + one row + one notebook.
"""
from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass


@dataclass(frozen=True)
class Chapter:
    id: str        # "20": the notebook's number, the book's order
    key: str       # "delta": the name used by gradcheck, bench and tour
    title: str
    package: str   # "minimem.memory.delta": the chapter's code
    notebook: str  # "20_delta_rule": notebooks/20_delta_rule.ipynb
    requires: tuple[str, ...] = ()  # ids of the chapters it builds on (the book's chapter map)

    @property
    def cases_module(self) -> str:
        """The module that registers the chapter's gradient-check cases."""
        return f"{self.package}.cases"


CHAPTERS = (
    Chapter("00", "engine", "Reverse-mode autodiff and gradient checking",
            "minimem.autograd", "00_autograd", requires=()),
    Chapter("01", "nn", "Layers, training and synthetic memory tasks",
            "minimem.nn", "01_training_memory_tasks", requires=("00",)),
    Chapter("10", "hopfield", "Hopfield networks and associative memory",
            "minimem.memory.hopfield", "10_hopfield", requires=("01",)),
    Chapter("20", "delta", "Linear attention and the delta rule",
            "minimem.memory.delta", "20_delta_rule", requires=("01", "10")),
    Chapter("25", "titans", "Learning to memorize at test time: Titans and ATLAS",
            "minimem.memory.titans", "25_titans_atlas", requires=("20",)),
    Chapter("30", "pkm", "Product-key memory",
            "minimem.memory.product_keys", "30_product_keys", requires=("01",)),
    Chapter("40", "sparse", "Sparse attention, blockwise attention and kNN memory",
            "minimem.memory.sparse", "40_sparse_attention", requires=("01",)),
    Chapter("45", "ring", "Attention as a reduction: Aaren, ring attention, blockwise "
            "transformers, split-KV decoding, landmark attention", "minimem.memory.reduction",
            "45_attention_as_reduction", requires=("40",)),
    Chapter("50", "mrbp", "Segment recurrence: Memformer, MRBP, RMT, Transformer-XL",
            "minimem.memory.segment", "50_mrbp", requires=("01",)),
    Chapter("55", "armt", "Associative memory across segments: ARMT, LM2, TransformerFAM, "
            "Cached Transformer", "minimem.memory.associative", "55_associative_segments",
            requires=("20", "50")),
)


def chapter(key: str) -> Chapter:
    """The row whose ``key`` (or ``id``) is ``key``."""
    for ch in CHAPTERS:
        if key in (ch.key, ch.id):
            return ch
    raise ValueError(f"chapter: no chapter {key!r}; known: {[ch.key for ch in CHAPTERS]}")


def load_cases() -> None:
    """Import every chapter's ``cases`` module, so the gradcheck registry holds all cases."""
    for ch in CHAPTERS:
        importlib.import_module(ch.cases_module)


def app_module(app: str, ch: Chapter):
    """The chapter's module of an app (``"bench"`` or ``"tour"``), or None when it has none."""
    name = f"minimem.{app}.{ch.key}"
    return importlib.import_module(name) if importlib.util.find_spec(name) else None
