"""Attention kernels and processors shared by the methods (see the kernels issue; filled in there)."""
