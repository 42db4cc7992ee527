"""The REST API (FastAPI): mem0-compatible memory routes and Optimus extensions.

``core.api.app.create_app(runtime)`` builds the app; ``python -m core.api`` serves it.
"""
