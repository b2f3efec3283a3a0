"""The registry's tables: versions, aliases and their moves, cards."""
