"""testing layer of nwb-celltype."""
