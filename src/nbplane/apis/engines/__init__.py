"""Execution engines: run a notebook with injected parameters in a Jupyter kernel.

``base`` (request, outcome, the Engine lifecycle), ``isolated`` (a fresh pooled kernel
per execution, the default), ``reuse`` (a warm kernel per notebook version), ``kernel`` (a
started kernel and running cells in it), ``outputs`` (a cell's outputs from its IOPub messages),
``factories`` (the kernel factory contract and the stock factory), ``forked`` (kernels forked
from a template process, which is ``_forkserver``), ``pool`` (choosing a factory, kernels started
ahead) and ``_incell`` (runs inside a kernel: several cells in one request).

Kept free of imports: the fork server runs as
``python -m nbplane.apis.engines._forkserver`` and must not load anything but what a kernel needs.
"""
