"""What a person looks at: the report, the demo and the benchmark of record.

- `results`: the plain values a report shows (mixtures per budget, fits, validation curves).
- `plots`: the three PNG plots from those values; `html`: the self-contained page.
- `load`: an experiment directory (`autoscale run`) -> `ReportData`.
- `demo`: `autoscale demo`, AutoScale on the embedded corpus; `bench`: `autoscale bench`.
"""
