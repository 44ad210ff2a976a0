"""Interoperability: third-party implementations (installed vendor profiles) in the roles."""
