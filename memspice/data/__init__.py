"""Datasets (IDX files, scikit-learn's digits) and input encoders (pixels -> row voltages)."""

from memspice.data.datasets import DATASETS, Dataset, load_dataset
from memspice.data.encoders import ENCODERS, DirectEncoder, RateEncoder, make_encoder
from memspice.data.idx import read_idx

__all__ = ["DATASETS", "ENCODERS", "Dataset", "DirectEncoder", "RateEncoder", "load_dataset", "make_encoder",
           "read_idx"]
