"""Ready-made experiments above the pipeline: ``autoscale demo`` and ``autoscale bench``.

They write ordinary experiment configs, run them (`autoscale.experiment`) and hand the results to
`autoscale.report`, which only renders.
"""
