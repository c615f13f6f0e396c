"""The IPython extension: develop a job inside the notebook it is made of."""
