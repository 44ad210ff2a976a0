"""NAPT at the IPsec gateway (draft-gupta Appendix A) beyond what remote hosts initiate: redirection
rules for connections from the intranet to a remote host (Appendix C)."""
