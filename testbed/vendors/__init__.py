"""Third-party implementations that this project ships as profiles (testbed/profile_api.py says
what a profile is; pyproject.toml declares them in the entry point group `testbed.profiles`).

Each profile renders the program's configuration from the scenario's role config, starts it inside
the role's node, waits until it is ready and returns a handle whose `status()` answers a JSON-able
dict in the same shape as our own daemons, so the cases never need to know which implementation
they talk to. A vendor's own profile lives in the vendor's package, not here (README, "Adding
your implementation").
"""
