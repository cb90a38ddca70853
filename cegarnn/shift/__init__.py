"""The distribution-shift experiment: does a classifier keep its label under every shift a generator
can produce from a latent box? (EXPERIMENTS.md)

- ``sweep``: one sweep cell (shift, classifier, radius, method) over many test images → ``rows.csv``;
- ``rows``: the ``rows.csv`` schema, reading rows and counterexamples back, the tidy CSV;
- ``tables``, ``figures``: Markdown tables (results, disagreements, time) and plots;
- ``report``: ``write_report``, the ``cegarnn report`` command's work;
- ``demo``: ``make demo`` (``python -m cegarnn.shift.demo``).
"""
