"""library layer of nwb-celltype."""
