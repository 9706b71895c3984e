"""model layer of nwb-celltype."""
