"""Interoperability: third-party implementations (first: strongSwan) in the roles."""
