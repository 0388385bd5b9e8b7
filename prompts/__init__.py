"""headmaps prompts package (built in later issues)."""
