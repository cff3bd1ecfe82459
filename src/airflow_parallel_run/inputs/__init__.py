"""Inputs: datasets are descriptions (paths, later byte ranges); only workers read their data."""

from .files import FileDataset, InputItem
from .side_inputs import SideInput
from .tabular import TablePiece, TabularDataset

__all__ = ["FileDataset", "InputItem", "SideInput", "TablePiece", "TabularDataset"]
