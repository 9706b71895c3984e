"""nwb layer of nwb-celltype."""
