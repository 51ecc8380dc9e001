"""The pure cores of the other mixing methods (numpy/scipy; no torch, no files, no printing).

- `data_mixing`: Data Mixing Laws (Ye et al.) at one budget.
- `optimal_mixture`: the optimal-mixture scaling law (Shukor et al.), joint in tokens and weights.
- `regmix`: RegMix (Liu et al.): random mixtures, the regressor, its search.
- `doremi`: DoReMi's domain-weight update (Xie et al.).

AutoScale's own core is `autoscale.ddo` (the search at one budget) and `autoscale.extrapolate` (its
law). The adapters that make each of these a method are in `autoscale.methods`; DoReMi's training
mode is `autoscale.train.doremi`.
"""
