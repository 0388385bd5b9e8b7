"""headmaps evaluation package (built in later issues)."""
