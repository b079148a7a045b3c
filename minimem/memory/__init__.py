"""The chapters: one module per memory mechanism (see each module's docstring for equations).

Each chapter re-exports its public names here, so ``minimem.memory.<name>`` reaches them.
"""
