"""The HTTP API: one module per feature, each adding its routes to the Klein app."""
