"""Trading bots (grid, DCA, TWAP), their runner and backtests."""
