"""Virtual devices, fleets and fault injection for tests, benchmarks and the demo."""
