"""The report of a class (summary, galleries, HTML page) and its results as Python objects."""
