"""recengine's built-in components, each registered through the public hooks."""
