"""Notebook API executions: records, the queue, and the workers that run them."""
