"""One router per API surface: nbplane's own and jupyrest's."""
