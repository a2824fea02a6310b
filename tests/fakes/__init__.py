"""Stand-ins for servers we cannot reach in tests, speaking their documented protocols."""
