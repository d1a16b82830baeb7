"""Optional integrations with other systems; each imports its dependency lazily (an extra)."""
