"""simulate layer of nwb-celltype."""
