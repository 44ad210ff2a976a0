"""Security (draft-gupta section 4): only authorized users reach the protected network through G
(4 (a): authentication, spoofing, replay, tampering), and nobody reaches it through an authorized
remote host (4 (b): host hardening of R: no forwarding, no unsolicited connections).

Black-box like every case: traffic that gets through or not, captures, and the roles' public status.
"""
