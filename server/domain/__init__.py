"""The pure core: event types, decisions, plans and texts. No I/O imports (a test enforces it)."""
