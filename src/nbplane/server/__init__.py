"""The nbplane HTTP server: notebook APIs and their executions."""
