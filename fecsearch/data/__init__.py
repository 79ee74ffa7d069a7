"""Training and evaluation data: FER+ and class-folder labels, triplets, the FEC dataset."""
