"""Checks and measurements of the fast paths: ``graph_pool`` (the caching allocator's rule the CUDA-graph
step relies on, on real CUDA), ``self_check`` (graphed against eager steps of a real run: the GPU slot's
check), ``plain_loop`` (the plain PyTorch loop the bench compares with). They produce no ledger row."""
