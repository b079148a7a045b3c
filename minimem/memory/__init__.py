"""The memory mechanisms, one subpackage per chapter (see each folder's docstring).

``minimem.memory`` re-exports every chapter's mechanisms and layers (``memory.delta_rule``,
``memory.ClassicalHopfield``); a chapter's experiments and figures are reached as
``minimem.memory.<chapter>.lab`` and ``.plots``, its gradient-check cases as ``.cases``.
"""
from . import associative, delta, hopfield, product_keys, reduction, segment, sparse, titans
from .hopfield import *  # noqa: F401,F403  (the chapter's __all__)
from .delta import *  # noqa: F401,F403  (the chapter's __all__)
from .titans import *  # noqa: F401,F403  (the chapter's __all__)
from .product_keys import *  # noqa: F401,F403  (the chapter's __all__)
from .sparse import *  # noqa: F401,F403  (the chapter's __all__)
from .reduction import *  # noqa: F401,F403  (the chapter's __all__)
from .segment import *  # noqa: F401,F403  (the chapter's __all__)
from .associative import *  # noqa: F401,F403  (the chapter's __all__)

__all__ = ["associative", "delta", "hopfield", "product_keys", "reduction", "segment", "sparse",
           "titans"]
__all__ += hopfield.__all__
__all__ += delta.__all__
__all__ += titans.__all__
__all__ += product_keys.__all__
__all__ += sparse.__all__
__all__ += reduction.__all__
__all__ += segment.__all__
__all__ += associative.__all__
