"""The chapters: one module per memory mechanism (see each module's docstring for equations).

Each chapter re-exports its public names here, so ``minimem.memory.<name>`` reaches them.
"""
from .hopfield import (ClassicalHopfield, DenseAssociativeMemory, Hopfield,  # noqa: F401
                       HopfieldLayer, HopfieldPooling, RecallResult, Softmax1,
                       classical_energy, hebbian_weights, hopfield_energy, hopfield_retrieve,
                       hopfield_retrieve_reference, retrieval_error_bound, separation,
                       softmax1)
