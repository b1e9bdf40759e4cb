"""SQL per aggregate; every function takes a connection."""
