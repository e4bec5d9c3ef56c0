"""Data sources for training: the real ULB CSV and the embedded synthetic generator."""

from training.data.csv_source import DataFileError
from training.data.csv_source import read_transactions_csv
from training.data.split import DatasetSplits
from training.data.split import Split
from training.data.split import split_dataset
from training.data.synthetic import generate_transactions

__all__ = [
    "DataFileError",
    "DatasetSplits",
    "Split",
    "generate_transactions",
    "read_transactions_csv",
    "split_dataset",
]
