"""The IPsec daemons' runtime: the I/O driver of the IKE core, the ESP data path, sockets, role configs, and the gateway's and client's host plumbing."""
