"""Third-party implementations that can fill a role (vendor profiles; see testbed/profiles.py).

Each module here offers `start_role(world, role) -> RoleHandle`: it generates the program's
configuration from the scenario's role config, starts it inside the role's node, waits until
it is ready and returns a handle whose `status()` answers a JSON-able dict in the same shape
as our own daemons, so the cases never need to know which implementation they talk to.
"""
