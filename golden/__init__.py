"""Bit-exact NumPy golden model of every hardware block, each with a float64 reference beside it.

``golden.<block>`` defines the block's arithmetic once; ``hw.<block>`` implements it and the cocotb
tests prove the two equal. Nothing here imports ``hw`` or Amaranth.
"""
