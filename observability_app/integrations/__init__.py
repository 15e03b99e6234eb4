"""Integrations with other tools: one module per tool, each behind its own pyproject extra."""
