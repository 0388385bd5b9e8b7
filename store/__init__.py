"""headmaps store package (built in later issues)."""
