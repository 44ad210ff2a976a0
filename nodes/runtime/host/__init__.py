"""Host plumbing of the userspace data planes: netlink, raw sockets, TUN devices, routes, DHCP, resolver, and the undo log of host changes."""
