"""MCP (Model Context Protocol) access to Optimus memories: ``server`` (the endpoint at ``/mcp``),
``auth`` (API keys as bearer tokens) and ``tools`` (the memory tools)."""
