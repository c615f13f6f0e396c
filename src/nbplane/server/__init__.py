"""The nbplane HTTP server: notebook APIs and their executions."""

from nbplane.platform.imports import import_hiding

# httpx imports its command line (rich's progress bars and syntax, pygments' lexers: about
# 2.5 MB) whenever rich and click are installed, as they are here; a server never runs it.
import_hiding("httpx", ["httpx._main"])
