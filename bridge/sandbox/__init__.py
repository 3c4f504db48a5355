"""Local servers on free loopback ports: the demo sandbox and the test suite both run these."""
