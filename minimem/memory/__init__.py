"""The memory mechanisms, one subpackage per chapter (see each folder's docstring).

``minimem.memory`` re-exports every chapter's mechanisms and layers (``memory.delta_rule``,
``memory.ClassicalHopfield``); a chapter's experiments and figures are reached as
``minimem.memory.<chapter>.lab`` and ``.plots``, its gradient-check cases as ``.cases``.
"""
from . import delta, hopfield, product_keys, segment, sparse
from .hopfield import *  # noqa: F401,F403  (the chapter's __all__)
from .delta import *  # noqa: F401,F403  (the chapter's __all__)
from .product_keys import *  # noqa: F401,F403  (the chapter's __all__)
from .sparse import *  # noqa: F401,F403  (the chapter's __all__)
from .segment import *  # noqa: F401,F403  (the chapter's __all__)

__all__ = ["delta", "hopfield", "product_keys", "segment", "sparse"]
__all__ += hopfield.__all__
__all__ += delta.__all__
__all__ += product_keys.__all__
__all__ += sparse.__all__
__all__ += segment.__all__
