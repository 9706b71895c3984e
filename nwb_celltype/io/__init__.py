"""io layer of nwb-celltype."""
