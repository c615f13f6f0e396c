"""Execution engines: run a notebook with injected parameters in a Jupyter kernel.

``base`` (request, outcome, the Engine lifecycle), ``isolated`` (a fresh pooled kernel per
execution, the default), ``reuse`` (a warm kernel per notebook version), ``kernels`` (kernel
start, cell execution, the pool), ``forked`` (kernels forked from a template process, which is
``_forkserver``) and ``_incell`` (runs inside a kernel: several cells in one request).

Kept free of imports: the fork server runs as
``python -m nbplane.apis.engines._forkserver`` and must not load anything but what a kernel needs.
"""
