"""Building blocks shared by the sb3-bayes algorithms (this package imports no algorithm)."""
