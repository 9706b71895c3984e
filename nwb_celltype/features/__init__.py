"""features layer of nwb-celltype."""
