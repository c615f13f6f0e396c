"""Execution engines: run a notebook with injected parameters on IPython shells or Jupyter kernels.

``base`` (request, outcome, the Engine lifecycle), ``shell`` (``isolated``, the default: a fresh
forked IPython shell per execution; ``reuse``: warm shells per notebook version), ``warm`` (the
warm runners per key both reuse engines share), ``isolated`` (``kernel-isolated``: a fresh
pooled kernel per execution), ``reuse`` (``kernel-reuse``: warm kernels per notebook version),
``kernel`` (a started kernel and running cells in it), ``outputs`` (a cell's outputs from its
IOPub messages, or a shell's messages of the same shape), ``factories`` (the kernel factory
contract and the stock factory), ``forked`` (the template process that shells and kernels are
forked from, which is ``_forkserver``), ``pool`` (choosing a factory, kernels started ahead),
``_shellserver`` (runs inside a shell) and ``_incell`` (runs inside a kernel: several cells in
one request).

Kept free of imports: the fork server runs as
``python -m nbplane.apis.engines._forkserver`` and must not load anything but what a kernel or
a shell needs.
"""
