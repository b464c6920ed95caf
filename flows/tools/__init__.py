"""Tooling beside the pipeline, not a stage of it: the synthetic feed behind `vdp generate` and
`vdp demo` (``generate``, with drivers' breaks in ``generate_breaks``) and the independent
plain-Python oracle that computes the answer the pipeline must give (``reference``)."""
