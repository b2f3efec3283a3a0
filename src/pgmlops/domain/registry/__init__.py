"""What a registered version is: its card, records and signatures."""
