"""Board targets, the open synthesis flow (Yosys, nextpnr, ecppack) and the host driver."""
