"""Serving: a FastAPI app per domain (testable without Ray) and its Ray Serve deployment."""
