"""medvlab: an open medical vision lab. Research and teaching use only, never a diagnosis."""

__version__ = "0.1.0"
