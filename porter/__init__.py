"""Porter: @porter comments become pull requests written by coding agents."""
