"""Reading notebooks and classifying their cells."""
