//! Sans-IO DHCPv4 client (see issue 3).
