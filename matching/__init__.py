"""The C order book and its wrapper, instruments, orders, executions, positions, the engine and risk."""
