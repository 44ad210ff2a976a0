"""The Mobile IP daemons' runtime: the executor of the MIP cores' actions (sends, tunnels, ARP, host changes), role configs, agent discovery, and the mobile VPN node's layering."""
